//! What a plugin may say during one call: its stdout, its stderr and its `log` calls, all
//! charged to one budget (`limits.max_log_kib`).
//!
//! It owns that budget and the pipes WASI writes into. Going over the budget traps the call
//! at once (the host counts it as a `log_limit` error); everything is printed escaped, so a
//! plugin cannot forge a host log line. It must not decide what happens to the call's result.

use crate::escape::escape;
use bytes::Bytes;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};

/// Lines of stdout/stderr printed per call and stream; the rest is counted, not shown.
const MAX_LINES_SHOWN: usize = 50;
/// Characters of one printed line.
const MAX_LINE_CHARS: usize = 500;

#[derive(Default)]
struct State {
    cap: usize,
    used: usize,
    overflow: bool,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

/// One instance's output budget, shared by its stdout and stderr pipes and its `log` import.
#[derive(Clone)]
pub(crate) struct GuestOutput(Arc<Mutex<State>>);

#[derive(Clone, Copy)]
enum Stream {
    Stdout,
    Stderr,
}

/// The error a call over budget traps with.
#[derive(Debug, thiserror::Error)]
#[error("wrote more than {0} KiB to its log, stdout and stderr in one call (limits.max_log_kib)")]
pub(crate) struct LogOverflow(pub u64);

impl GuestOutput {
    pub(crate) fn new(cap_kib: u64) -> Self {
        GuestOutput(Arc::new(Mutex::new(State {
            cap: usize::try_from(cap_kib.saturating_mul(1024)).unwrap_or(usize::MAX),
            ..State::default()
        })))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        match self.0.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    fn cap_kib(&self) -> u64 {
        (self.lock().cap / 1024) as u64
    }

    /// Charges `n` bytes; false (and the overflow mark) when they do not fit.
    fn charge(&self, n: usize) -> bool {
        let mut s = self.lock();
        if s.used.saturating_add(n) > s.cap {
            s.overflow = true;
            return false;
        }
        s.used += n;
        true
    }

    /// Charges and prints one `log` call, or refuses it with the trap to raise.
    pub(crate) fn log(
        &self,
        plugin: &str,
        level: tracing::Level,
        message: &str,
    ) -> Result<(), LogOverflow> {
        if !self.charge(message.len()) {
            return Err(LogOverflow(self.cap_kib()));
        }
        let message = escape(message);
        match level {
            tracing::Level::TRACE => tracing::trace!(plugin, "{message}"),
            tracing::Level::DEBUG => tracing::debug!(plugin, "{message}"),
            tracing::Level::INFO => tracing::info!(plugin, "{message}"),
            tracing::Level::WARN => tracing::warn!(plugin, "{message}"),
            tracing::Level::ERROR => tracing::error!(plugin, "{message}"),
        }
        Ok(())
    }

    /// Whether this call went over the budget.
    pub(crate) fn overflowed(&self) -> bool {
        self.lock().overflow
    }

    /// Prints what the call wrote to stdout and stderr (escaped, one log line per line) and
    /// empties the budget for the instance's next call.
    pub(crate) fn finish_call(&self, plugin: &str) {
        let (stdout, stderr) = {
            let mut s = self.lock();
            s.used = 0;
            s.overflow = false;
            (std::mem::take(&mut s.stdout), std::mem::take(&mut s.stderr))
        };
        for (stream, bytes) in [("stdout", stdout), ("stderr", stderr)] {
            if bytes.is_empty() {
                continue;
            }
            let text = String::from_utf8_lossy(&bytes);
            let mut lines = text.lines();
            for line in lines.by_ref().take(MAX_LINES_SHOWN) {
                let shown: String = line.chars().take(MAX_LINE_CHARS).collect();
                tracing::info!(plugin, stream, "{}", escape(&shown));
            }
            let rest = lines.count();
            if rest > 0 {
                tracing::info!(plugin, stream, "({rest} more lines not shown)");
            }
        }
    }

    /// What the guest wrote to stderr in this call (for a panic message).
    pub(crate) fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.lock().stderr).into_owned()
    }

    pub(crate) fn stdout_pipe(&self) -> GuestPipe {
        GuestPipe {
            out: self.clone(),
            stream: Stream::Stdout,
        }
    }

    pub(crate) fn stderr_pipe(&self) -> GuestPipe {
        GuestPipe {
            out: self.clone(),
            stream: Stream::Stderr,
        }
    }

    fn write(&self, stream: Stream, bytes: &[u8]) -> Result<(), StreamError> {
        let mut s = self.lock();
        if s.used.saturating_add(bytes.len()) > s.cap {
            s.overflow = true;
            let kib = (s.cap / 1024) as u64;
            return Err(StreamError::Trap(LogOverflow(kib).into()));
        }
        s.used += bytes.len();
        match stream {
            Stream::Stdout => s.stdout.extend_from_slice(bytes),
            Stream::Stderr => s.stderr.extend_from_slice(bytes),
        }
        Ok(())
    }

    fn room(&self) -> usize {
        let s = self.lock();
        s.cap.saturating_sub(s.used)
    }
}

/// The guest's stdout or stderr: bytes go into the shared budget.
#[derive(Clone)]
pub(crate) struct GuestPipe {
    out: GuestOutput,
    stream: Stream,
}

#[wasmtime_wasi::async_trait]
impl OutputStream for GuestPipe {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        self.out.write(self.stream, &bytes)
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        match self.out.room() {
            // A full budget still accepts a write request, so that the write itself
            // overflows and traps the call rather than leaving the guest waiting.
            0 => Ok(1),
            n => Ok(n),
        }
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for GuestPipe {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for GuestPipe {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Poll::Ready(
            self.out
                .write(self.stream, buf)
                .map(|()| buf.len())
                .map_err(|_| std::io::Error::other("plugin output over limits.max_log_kib")),
        )
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl IsTerminal for GuestPipe {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestPipe {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }

    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_stdout_and_stderr_share_one_budget() {
        let out = GuestOutput::new(1);
        assert!(out.log("p", tracing::Level::INFO, &"a".repeat(600)).is_ok());
        assert!(out.write(Stream::Stdout, &[b'x'; 300]).is_ok());
        assert!(out.write(Stream::Stderr, &[b'y'; 200]).is_err());
        assert!(out.overflowed());
        out.finish_call("p");
        assert!(!out.overflowed(), "the next call starts with a full budget");
        assert!(
            out.log("p", tracing::Level::INFO, &"a".repeat(1024))
                .is_ok()
        );
        assert!(out.log("p", tracing::Level::INFO, "b").is_err());
    }
}
