//! Writing a command's output: a reader that stops early (`keygate usage | head`) ends the
//! output, not the process with a panic.

use std::io::{ErrorKind, Write};

/// Writes `text` to stdout. A closed pipe is not an error (the reader has what it wanted); any
/// other write error is.
pub fn write(text: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(err) if err.kind() == ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}
