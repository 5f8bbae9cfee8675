//! Printing for a reader that may stop reading. `sotto sync | head -1` must
//! not lose messages: a message counts as printed only once its reader took
//! it. Into a pipe, a line written is not yet read (the pipe buffers it, and
//! the reader may exit without reading it), so after each line the printer
//! waits until the pipe is empty again, or finds its reader gone.

use std::io;

/// Whether the lines written to standard output so far were taken by its
/// reader: at once for a terminal or a file; for a pipe, once it is empty
/// (`false` when its reader went away first).
#[cfg(unix)]
pub fn stdout_taken() -> io::Result<bool> {
    use std::os::fd::AsFd;

    use rustix::event::{PollFd, PollFlags, Timespec};
    use rustix::fs::FileType;

    let stdout = io::stdout();
    let fd = stdout.as_fd();
    let stat = rustix::fs::fstat(fd)?;
    if FileType::from_raw_mode(stat.st_mode) != FileType::Fifo {
        return Ok(true);
    }
    let now = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    loop {
        if rustix::io::ioctl_fionread(fd)? == 0 {
            return Ok(true);
        }
        // A pipe without readers polls as an error.
        let mut fds = [PollFd::new(&fd, PollFlags::OUT)];
        rustix::event::poll(&mut fds, Some(&now))?;
        if fds[0].revents().intersects(PollFlags::ERR | PollFlags::HUP) {
            return Ok(false);
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

#[cfg(not(unix))]
pub fn stdout_taken() -> io::Result<bool> {
    Ok(true)
}

/// The width of the terminal standard output is, if it is one.
pub fn terminal_width() -> Option<usize> {
    use std::io::IsTerminal;
    if !io::stdout().is_terminal() {
        return None;
    }
    ratatui::crossterm::terminal::size()
        .ok()
        .map(|(columns, _)| usize::from(columns))
        .filter(|&columns| columns > 0)
}

/// True when `e` says the reader of our output went away: a program ends
/// quietly then, as `rg | head` does.
pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<io::Error>()
            .is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
    })
}
