//! The whole machine's CPU over time windows: a background thread samples
//! `/proc/stat` every 20 ms (busy = user + nice + system + irq + softirq,
//! and steal, in 10 ms jiffies); a window's seconds are interpolated
//! linearly between the samples around its ends; or two readings
//! ([`Cpu::now`], [`Cpu::since`]). USER_HZ is 100 here.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Seconds since the epoch, as the windows are given.
pub fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

type Sample = (f64, f64, f64);

pub struct Sampler {
    samples: Arc<Mutex<Vec<Sample>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

fn read() -> (f64, f64) {
    let text = std::fs::read_to_string("/proc/stat").unwrap();
    let v: Vec<f64> = text
        .lines()
        .next()
        .unwrap()
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().unwrap())
        .collect();
    (v[0] + v[1] + v[2] + v[5] + v[6], v[7])
}

impl Sampler {
    pub fn start() -> Sampler {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, halt) = (samples.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !halt.load(Ordering::Relaxed) {
                let (busy, steal) = read();
                s.lock().unwrap().push((now(), busy, steal));
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        Sampler {
            samples,
            stop,
            thread: Some(thread),
        }
    }

    fn at(samples: &[Sample], t: f64) -> (f64, f64) {
        let i = samples.partition_point(|s| s.0 < t);
        if i == 0 {
            return (samples[0].1, samples[0].2);
        }
        if i >= samples.len() {
            let last = samples[samples.len() - 1];
            return (last.1, last.2);
        }
        let (a, b) = (samples[i - 1], samples[i]);
        let f = if b.0 > a.0 {
            (t - a.0) / (b.0 - a.0)
        } else {
            0.0
        };
        (a.1 + f * (b.1 - a.1), a.2 + f * (b.2 - a.2))
    }

    /// Busy and steal CPU seconds of the machine between `t0` and `t1`.
    pub fn window(&self, t0: f64, t1: f64) -> Cpu {
        let samples = self.samples.lock().unwrap();
        let (b0, s0) = Self::at(&samples, t0);
        let (b1, s1) = Self::at(&samples, t1);
        Cpu {
            busy: (b1 - b0) / 100.0,
            steal: (s1 - s0) / 100.0,
        }
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Busy and steal CPU seconds in a window.
#[derive(Debug, Clone, Copy, Default)]
pub struct Cpu {
    pub busy: f64,
    pub steal: f64,
}

impl Cpu {
    /// The machine's CPU seconds so far.
    pub fn now() -> Cpu {
        let (busy, steal) = read();
        Cpu {
            busy: busy / 100.0,
            steal: steal / 100.0,
        }
    }

    /// What was used since `self` (a [`Cpu::now`]).
    pub fn since(self) -> Cpu {
        let now = Cpu::now();
        Cpu {
            busy: now.busy - self.busy,
            steal: now.steal - self.steal,
        }
    }
}

impl std::ops::Add for Cpu {
    type Output = Cpu;
    fn add(self, o: Cpu) -> Cpu {
        Cpu {
            busy: self.busy + o.busy,
            steal: self.steal + o.steal,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_between_samples_are_interpolated_and_clamped_at_the_ends() {
        let samples = [(10.0, 100.0, 0.0), (12.0, 300.0, 20.0)];
        assert_eq!(Sampler::at(&samples, 11.0), (200.0, 10.0));
        assert_eq!(Sampler::at(&samples, 9.0), (100.0, 0.0));
        assert_eq!(Sampler::at(&samples, 13.0), (300.0, 20.0));
    }
}
