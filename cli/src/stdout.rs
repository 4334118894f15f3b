//! Standard output for every command: a reader that closed the pipe
//! (`kist get D | head`) ends kist quietly, as it ends `cat`, instead of an
//! error about a broken pipe.

use std::io::Write;

/// Exit status of a process killed by SIGPIPE, which is what a shell shows
/// for `cat` in the same place.
const CLOSED_PIPE: i32 = 128 + 13;

/// Locked standard output that exits quietly when its reader is gone.
pub fn stdout() -> Stdout {
    Stdout(std::io::stdout().lock())
}

/// See [`stdout`].
pub struct Stdout(std::io::StdoutLock<'static>);

impl Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        quiet_on_closed_pipe(self.0.write(buf))
    }

    fn flush(&mut self) -> std::io::Result<()> {
        quiet_on_closed_pipe(self.0.flush())
    }
}

fn quiet_on_closed_pipe<T>(result: std::io::Result<T>) -> std::io::Result<T> {
    match result {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(CLOSED_PIPE),
        other => other,
    }
}
