//! schedule.csv, read and written exactly like the reference's Python `csv`
//! module does, so the file moves between the two plugins unchanged.
//!
//! Format: no header, columns `Name,Action,Timer,Active`; fields containing
//! `,` `"` or a line break are quoted with `"` (inner quotes doubled), the
//! others are not; lines end with `\r\n` (`\n` alone is read too); Active is
//! `True`/`False`. As in Python, a missing Active column means active, blank
//! lines are ignored, and text after a closing quote is kept (`"a"b` = `ab`).
//!
//! Improve: the reference rewrote whatever it could parse and dropped or
//! mangled the rest. Here a line that is not a valid job (bad syntax, wrong
//! field count, bad name/action/timer, duplicate job) becomes an
//! [`Line::Invalid`] that is reported, skipped by the scheduler and written
//! back byte for byte on the next rewrite. Lines starting with `#` are kept
//! as comments. A record spanning several lines (a quoted line break) is not
//! supported: no valid field can contain one.

use std::collections::HashMap;
use std::sync::Arc;

use super::{Job, JobKey, ScheduleError};

#[derive(Debug, Clone, thiserror::Error)]
pub enum LineError {
    #[error("not valid UTF-8")]
    NotUtf8,
    #[error("unterminated quoted field")]
    UnterminatedQuote,
    #[error("expected 4 fields (Name,Action,Timer,Active), found {0}")]
    FieldCount(usize),
    #[error("invalid Active value {0:?}: expected True or False")]
    Active(String),
    #[error("duplicate of line {0} (same volume and action)")]
    Duplicate(usize),
    #[error("{0}")]
    Job(String),
}

/// A line that is not a valid job, kept verbatim.
#[derive(Debug, Clone)]
pub struct InvalidLine {
    /// 1-based line number in the file it was read from.
    pub number: usize,
    /// The line's bytes, without its line ending.
    pub raw: Vec<u8>,
    pub error: LineError,
    /// Its (Name, Action) when the fields could be split, so an explicit API
    /// change of that job can replace or delete it.
    pub key: Option<JobKey>,
}

/// One line of the file.
#[derive(Debug, Clone)]
pub enum Line {
    Job(Arc<Job>),
    Invalid(InvalidLine),
    /// `#...`: kept verbatim, never reported.
    Comment(Vec<u8>),
}

/// The whole file, in order.
#[derive(Debug, Clone, Default)]
pub struct ScheduleFile {
    pub lines: Vec<Line>,
}

impl ScheduleFile {
    /// True when a line (valid or not) is about `key`.
    pub fn has_key(&self, key: &JobKey) -> bool {
        self.lines.iter().any(|l| match l {
            Line::Job(j) => j.key == *key,
            Line::Invalid(i) => i.key.as_ref() == Some(key),
            Line::Comment(_) => false,
        })
    }

    /// The valid jobs, in file order.
    pub fn jobs(&self) -> impl Iterator<Item = &Arc<Job>> {
        self.lines.iter().filter_map(|l| match l {
            Line::Job(j) => Some(j),
            _ => None,
        })
    }

    pub fn invalid(&self) -> impl Iterator<Item = &InvalidLine> {
        self.lines.iter().filter_map(|l| match l {
            Line::Invalid(i) => Some(i),
            _ => None,
        })
    }
}

/// Parses a file's bytes. Never fails: bad lines become [`Line::Invalid`].
pub fn parse(bytes: &[u8]) -> ScheduleFile {
    let mut lines = Vec::new();
    // Line number and byte range of each entry of `lines`.
    let mut origins: Vec<(usize, std::ops::Range<usize>)> = Vec::new();
    let mut start = 0;
    let mut number = 0;
    while start < bytes.len() {
        number += 1;
        let end = bytes[start..]
            .iter()
            .position(|b| *b == b'\n')
            .map_or(bytes.len(), |i| start + i);
        let mut range = start..end;
        start = end + 1;
        if bytes[range.clone()].last() == Some(&b'\r') {
            range.end -= 1;
        }
        let line = &bytes[range.clone()];
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        origins.push((number, range));
        if line.first() == Some(&b'#') {
            lines.push(Line::Comment(line.to_vec()));
            continue;
        }
        let invalid = |error: LineError, key: Option<JobKey>| {
            Line::Invalid(InvalidLine {
                number,
                raw: line.to_vec(),
                error,
                key,
            })
        };
        let Ok(text) = std::str::from_utf8(line) else {
            lines.push(invalid(LineError::NotUtf8, None));
            continue;
        };
        lines.push(match split_record(text).and_then(job_of) {
            Ok(job) => Line::Job(Arc::new(job)),
            Err((error, key)) => invalid(error, key),
        });
    }
    // The first line of a job wins; later ones are reported. A second pass,
    // so the common case borrows the keys instead of copying them.
    let mut first_line_of: HashMap<&JobKey, usize> = HashMap::with_capacity(lines.len());
    let mut duplicates = Vec::new();
    for (i, (line, (number, _))) in lines.iter().zip(&origins).enumerate() {
        if let Line::Job(job) = line {
            let first = *first_line_of.entry(&job.key).or_insert(*number);
            if first != *number {
                duplicates.push((i, first));
            }
        }
    }
    for (i, first) in duplicates {
        if let Line::Job(job) = &lines[i] {
            lines[i] = Line::Invalid(InvalidLine {
                number: origins[i].0,
                raw: bytes[origins[i].1.clone()].to_vec(),
                error: LineError::Duplicate(first),
                key: Some(job.key.clone()),
            });
        }
    }
    ScheduleFile { lines }
}

/// A record's job, or why it is not one (with its Name and Action when the
/// record has them).
fn job_of(mut fields: Vec<String>) -> Result<Job, (LineError, Option<JobKey>)> {
    let active = match &fields[..] {
        [_, _, _] => Ok(true),
        [_, _, _, active] => match active.trim() {
            a if a.eq_ignore_ascii_case("true") || a.is_empty() => Ok(true),
            a if a.eq_ignore_ascii_case("false") => Ok(false),
            a => Err(LineError::Active(a.into())),
        },
        _ => Err(LineError::FieldCount(fields.len())),
    };
    fields.resize(3, String::new());
    let (timer, action, name) = match (fields.pop(), fields.pop(), fields.pop()) {
        (Some(t), Some(a), Some(n)) => (t, a, n),
        _ => return Err((LineError::FieldCount(0), None)),
    };
    let checked = active.and_then(|active| {
        Job::check(&name, &action, &timer)
            .map(|parsed| (active, parsed))
            .map_err(|e: ScheduleError| LineError::Job(e.to_string()))
    });
    match checked {
        Ok((active, parsed)) => Ok(Job::assemble(name, action, &timer, active, parsed)),
        Err(e) => Err((e, Some((name, action)))),
    }
}

/// Splits one CSV record like Python's default (excel) dialect.
fn split_record(line: &str) -> Result<Vec<String>, (LineError, Option<JobKey>)> {
    let mut fields = Vec::with_capacity(4);
    let mut field = String::new();
    let mut in_quotes = false;
    let mut at_start = true;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if in_quotes {
            if c == '"' {
                if chars.peek() == Some(&'"') {
                    chars.next();
                    field.push('"');
                } else {
                    in_quotes = false;
                }
            } else {
                field.push(c);
            }
        } else if c == ',' {
            fields.push(std::mem::take(&mut field));
            at_start = true;
        } else if c == '"' && at_start {
            in_quotes = true;
            at_start = false;
        } else {
            field.push(c);
            at_start = false;
        }
    }
    if in_quotes {
        return Err((LineError::UnterminatedQuote, None));
    }
    fields.push(field);
    Ok(fields)
}

/// Renders the file like Python's `csv.DictWriter(...).writerows(...)`.
pub fn render(lines: &[Line]) -> Vec<u8> {
    let mut out = Vec::with_capacity(lines.len() * 48);
    for line in lines {
        match line {
            Line::Job(job) => {
                let active = if job.active { "True" } else { "False" };
                for (i, field) in [job.name(), job.action_text(), &job.timer_text, active]
                    .into_iter()
                    .enumerate()
                {
                    if i > 0 {
                        out.push(b',');
                    }
                    write_field(&mut out, field);
                }
            }
            Line::Invalid(InvalidLine { raw, .. }) | Line::Comment(raw) => {
                out.extend_from_slice(raw);
            }
        }
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// QUOTE_MINIMAL: quote only fields that need it.
fn write_field(out: &mut Vec<u8>, field: &str) {
    if field.contains([',', '"', '\r', '\n']) {
        out.push(b'"');
        out.extend_from_slice(field.replace('"', "\"\"").as_bytes());
        out.push(b'"');
    } else {
        out.extend_from_slice(field.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_writes_like_python() {
        // Written by Python's csv.DictWriter (see the module doc).
        let python = b"db,\"synchronize:h1,h2\",60,True\r\nweb,snapshot,\"cron:0 1,13 * * *\",False\r\ndb,purge:1h:1d:1w:4w:1y,1440,True\r\n";
        let file = parse(python);
        assert_eq!(file.jobs().count(), 3);
        assert_eq!(file.invalid().count(), 0);
        let jobs: Vec<_> = file.jobs().collect();
        assert_eq!(jobs[0].action_text(), "synchronize:h1,h2");
        assert!(!jobs[1].active);
        assert_eq!(jobs[1].timer_text, "cron:0 1,13 * * *");
        assert_eq!(render(&file.lines), python);
    }

    #[test]
    fn lf_endings_missing_active_and_blank_lines() {
        let file = parse(b"db,snapshot,60\n\n  \nweb,snapshot,5,false\nx,snapshot,5,True");
        let jobs: Vec<_> = file.jobs().collect();
        assert_eq!(jobs.len(), 3);
        assert!(jobs[0].active && !jobs[1].active && jobs[2].active);
        assert_eq!(
            render(&file.lines),
            b"db,snapshot,60,True\r\nweb,snapshot,5,False\r\nx,snapshot,5,True\r\n"
        );
    }

    #[test]
    fn bad_lines_are_reported_and_kept_verbatim() {
        let text: &[u8] = b"# my schedule\r\n\
            db,snapshot,60,True\r\n\
            db,snapshot,30,True\r\n\
            \"broken,snapshot,60,True\r\n\
            web,snapshot,abc,True\r\n\
            web,foo,60,True\r\n\
            ../x,snapshot,60,True\r\n\
            web,snapshot,60,True,extra\r\n\
            web,snapshot,60,maybe\r\n\
            web\xff,snapshot,60,True\r\n\
            ok,purge:1h:1d,60,True\r\n";
        let file = parse(text);
        assert_eq!(file.jobs().count(), 2);
        let invalid: Vec<_> = file.invalid().collect();
        assert_eq!(invalid.len(), 8);
        assert!(matches!(invalid[0].error, LineError::Duplicate(2)));
        assert_eq!(invalid[0].number, 3);
        assert!(matches!(invalid[1].error, LineError::UnterminatedQuote));
        assert!(invalid[2].error.to_string().contains("Invalid timer"));
        assert!(invalid[3].error.to_string().contains("unknown action"));
        assert!(invalid[4]
            .error
            .to_string()
            .contains("Invalid characters in volume name"));
        assert!(matches!(invalid[5].error, LineError::FieldCount(5)));
        assert!(matches!(invalid[6].error, LineError::Active(_)));
        assert!(matches!(invalid[7].error, LineError::NotUtf8));
        assert_eq!(
            invalid[2].key,
            Some(("web".to_string(), "snapshot".to_string()))
        );
        // Nothing is lost on rewrite.
        assert_eq!(render(&file.lines), text);
    }

    #[test]
    fn quoting_quirks() {
        assert_eq!(split_record("a,\"b\"c,d").unwrap(), ["a", "bc", "d"]);
        assert_eq!(split_record("a\"b,\"x\"\"y\"").unwrap(), ["a\"b", "x\"y"]);
        assert_eq!(split_record(",,").unwrap(), ["", "", ""]);
        let mut out = Vec::new();
        write_field(&mut out, "x\"y,z");
        assert_eq!(out, b"\"x\"\"y,z\"");
    }
}
