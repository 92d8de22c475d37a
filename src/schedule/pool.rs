//! The worker pools: the one place that says which threads run jobs.
//!
//! Jobs run on dedicated OS threads, never on tokio's threads (neither its
//! workers nor its blocking pool): a job blocks for as long as its snapshot,
//! purge or transfer takes, minutes for a transfer, and an idle dedicated
//! thread costs nothing. The scheduler has two pools of `workers`
//! (SCHEDULE_WORKERS) threads each, named `bv-sched-local-<n>` and
//! `bv-sched-remote-<n>`: one for local jobs (snapshot, purge), one for
//! remote jobs (replicate, synchronize), so no number of slow or hung
//! transfers can delay a snapshot. Each pool is fed by a FIFO queue: jobs
//! start in the order they were pushed (schedule.csv order), and pushing a
//! tick's jobs is one queue lock and one wake-up, however many jobs. Jobs of
//! one volume are not serialized: btrfs allows a snapshot or purge during a
//! send, and the snapshot/purge functions take the volume's own locks.
//!
//! The pool knows nothing of jobs: it runs [`Task`]s, and a task that is
//! dropped unrun (queue closed, no thread) records that itself.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

/// Work a pool runs; dropping it, run or not, is how it reports its end.
pub(super) trait Task: Send + 'static {
    /// Runs on a worker thread, blocking it until done.
    fn run(&mut self);
    /// Called instead of [`Task::run`] when the pool has no thread at all.
    fn refuse(&mut self);
}

/// A fixed set of worker threads fed by a FIFO queue.
pub(super) struct Pool<T> {
    queue: Arc<Queue<T>>,
    workers: usize,
}

/// The tasks waiting for a worker of one pool.
struct Queue<T> {
    state: Mutex<QueueState<T>>,
    ready: Condvar,
}

struct QueueState<T> {
    tasks: VecDeque<T>,
    closed: bool,
}

impl<T> Queue<T> {
    fn lock(&self) -> MutexGuard<'_, QueueState<T>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<T: Task> Pool<T> {
    /// Starts `size` threads. They hold no reference to the scheduler, so
    /// they exit once it is dropped (or the pool closed) and the queue is
    /// empty.
    pub(super) fn start(name: &str, size: usize) -> Pool<T> {
        let queue = Arc::new(Queue {
            state: Mutex::new(QueueState {
                tasks: VecDeque::new(),
                closed: false,
            }),
            ready: Condvar::new(),
        });
        let mut workers = 0;
        for n in 0..size {
            let queue = queue.clone();
            match std::thread::Builder::new()
                .name(format!("bv-sched-{name}-{n}"))
                .spawn(move || work(&queue))
            {
                Ok(_) => workers += 1,
                Err(e) => {
                    tracing::error!(pool = name, error = %e, "cannot start a scheduler worker thread")
                }
            }
        }
        Pool { queue, workers }
    }

    /// Queues tasks; those the pool cannot run are dropped, refused first
    /// when it has no thread.
    pub(super) fn push_all(&self, mut tasks: Vec<T>) {
        if tasks.is_empty() {
            return;
        }
        if self.workers == 0 {
            tasks.iter_mut().for_each(Task::refuse);
            return;
        }
        let count = tasks.len();
        let refused = {
            let mut state = self.queue.lock();
            if state.closed {
                tasks // dropped below, outside the lock: "not started"
            } else {
                state.tasks.extend(tasks);
                Vec::new()
            }
        };
        drop(refused);
        if count >= self.workers {
            self.queue.ready.notify_all();
        } else {
            for _ in 0..count {
                self.queue.ready.notify_one();
            }
        }
    }
}

impl<T> Pool<T> {
    /// Stops taking tasks and drops the queued ones. Running tasks go on;
    /// idle workers exit.
    pub(super) fn close(&self) {
        let dropped: Vec<T> = {
            let mut state = self.queue.lock();
            state.closed = true;
            state.tasks.drain(..).collect()
        };
        self.queue.ready.notify_all();
        drop(dropped);
    }
}

impl<T> Drop for Pool<T> {
    fn drop(&mut self) {
        self.close();
    }
}

/// A worker thread: runs queued tasks one at a time until the pool closes.
fn work<T: Task>(queue: &Queue<T>) {
    loop {
        let next = {
            let mut state = queue.lock();
            loop {
                if let Some(task) = state.tasks.pop_front() {
                    break Some(task);
                }
                if state.closed {
                    break None;
                }
                state = queue
                    .ready
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
            }
        };
        let Some(mut task) = next else {
            return;
        };
        task.run();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    type Ends = mpsc::Receiver<(usize, &'static str)>;

    /// Reports on a channel when it starts and how it ended: ran, refused,
    /// or dropped unrun. A gated probe runs until its gate opens.
    struct Probe {
        id: usize,
        ended: Option<&'static str>,
        gate: Option<mpsc::Receiver<()>>,
        report: mpsc::Sender<(usize, &'static str)>,
    }

    impl Task for Probe {
        fn run(&mut self) {
            let _ = self.report.send((self.id, "started"));
            if let Some(gate) = self.gate.take() {
                let _ = gate.recv_timeout(Duration::from_secs(10));
            }
            self.ended = Some("ran");
        }
        fn refuse(&mut self) {
            self.ended = Some("refused");
        }
    }

    impl Drop for Probe {
        fn drop(&mut self) {
            let _ = self.report.send((self.id, self.ended.unwrap_or("dropped")));
        }
    }

    fn probes(n: usize) -> (Vec<Probe>, Ends) {
        let (report, ends) = mpsc::channel();
        let probes = (0..n)
            .map(|id| Probe {
                id,
                ended: None,
                gate: None,
                report: report.clone(),
            })
            .collect();
        (probes, ends)
    }

    /// The next `n` reports, each within 10 s.
    fn next(ends: &Ends, n: usize) -> Vec<(usize, &'static str)> {
        (0..n)
            .map(|_| {
                ends.recv_timeout(Duration::from_secs(10))
                    .expect("no task report within 10 s")
            })
            .collect()
    }

    #[test]
    fn tasks_start_in_the_order_pushed() {
        let (tasks, ends) = probes(4);
        let pool = Pool::start("test", 1);
        pool.push_all(tasks);
        let started: Vec<usize> = next(&ends, 8)
            .into_iter()
            .filter_map(|(id, what)| (what == "started").then_some(id))
            .collect();
        assert_eq!(started, [0, 1, 2, 3]);
    }

    #[test]
    fn closing_drops_the_queued_tasks_and_lets_the_running_one_finish() {
        let (mut tasks, ends) = probes(3);
        let (open, gate) = mpsc::channel();
        tasks[0].gate = Some(gate);
        let pool = Pool::start("test", 1);
        pool.push_all(tasks);
        assert_eq!(next(&ends, 1), [(0, "started")]);
        pool.close();
        assert_eq!(next(&ends, 2), [(1, "dropped"), (2, "dropped")]);
        open.send(()).unwrap();
        assert_eq!(next(&ends, 1), [(0, "ran")]);
        let (late, ends) = probes(1);
        pool.push_all(late);
        assert_eq!(
            next(&ends, 1),
            [(0, "dropped")],
            "a closed pool runs nothing"
        );
    }

    #[test]
    fn a_pool_without_threads_refuses_tasks() {
        let (tasks, ends) = probes(2);
        Pool::start("test", 0).push_all(tasks);
        assert_eq!(next(&ends, 2), [(0, "refused"), (1, "refused")]);
    }
}
