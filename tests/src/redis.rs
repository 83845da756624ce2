//! A Redis server of the test's own: `redis-server` from Debian on a free port, its data
//! (AOF, `appendfsync always`) in a temp dir, so a test may kill and restart it without
//! touching the machine's shared Redis on 6379.

use crate::db::{free_port, wait_until};
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct PrivateRedis {
    dir: PathBuf,
    pub port: u16,
    password: Option<String>,
    child: Option<Child>,
}

impl PrivateRedis {
    pub fn start(tag: &str) -> PrivateRedis {
        Self::start_with(tag, None)
    }

    /// With `requirepass`.
    pub fn with_password(tag: &str, password: &str) -> PrivateRedis {
        Self::start_with(tag, Some(password.to_owned()))
    }

    fn start_with(tag: &str, password: Option<String>) -> PrivateRedis {
        let dir = crate::tempdir(&format!("redis-{tag}"));
        let mut r = PrivateRedis {
            dir,
            port: free_port(),
            password,
            child: None,
        };
        r.start_server();
        r
    }

    /// `redis://` URL of database 0, with the password if there is one.
    pub fn url(&self) -> String {
        match &self.password {
            Some(p) => format!("redis://:{p}@127.0.0.1:{}/0", self.port),
            None => format!("redis://127.0.0.1:{}/0", self.port),
        }
    }

    /// Starts (or restarts, on the same port and AOF) and waits until it answers PING.
    pub fn start_server(&mut self) {
        let mut cmd = Command::new("redis-server");
        cmd.args([
            "--port",
            &self.port.to_string(),
            "--bind",
            "127.0.0.1",
            "--dir",
            &self.dir.display().to_string(),
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--save",
            "",
        ]);
        if let Some(p) = &self.password {
            cmd.args(["--requirepass", p]);
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (Debian package redis-server; ./dev test installs it)");
        self.child = Some(child);
        assert!(
            wait_until(Duration::from_secs(20), || self.ping()),
            "private redis-server on {} did not answer",
            self.port
        );
    }

    /// kill -9: no shutdown, no final save; what is in the AOF is what survives.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends one command (inline form) and returns the raw reply.
    pub fn command(&self, cmd: &str) -> String {
        self.exchange(cmd).expect("redis answers")
    }

    fn ping(&self) -> bool {
        self.exchange("PING")
            .is_some_and(|r| r.starts_with("+PONG"))
    }

    /// `cmd` (after AUTH when there is a password), and the reply; None if nothing answers.
    fn exchange(&self, cmd: &str) -> Option<String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        let auth = self.password.as_ref().map(|p| format!("AUTH {p}\r\n"));
        s.write_all(format!("{}{cmd}\r\n", auth.as_deref().unwrap_or("")).as_bytes())
            .ok()?;
        let mut got = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        // Bounded: a reply (or two, after AUTH) arrives in a few reads.
        for _ in 0..10 {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
            let text = String::from_utf8_lossy(&got);
            let reply = match auth {
                Some(_) => text.split_once("\r\n").map(|(_, r)| r.to_owned()),
                None => Some(text.into_owned()),
            };
            if let Some(r) = reply.filter(|r| r.ends_with("\r\n")) {
                return Some(r);
            }
        }
        None
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
