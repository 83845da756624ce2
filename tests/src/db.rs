//! Real PostgreSQL and MariaDB for the output tests: a database of the test's own on the
//! shared servers (127.0.0.1:5432, 127.0.0.1:3306), read back with the servers' own command
//! line clients, and private server instances (temp dir, free port) for the tests that stop a
//! server or need password authentication, so the shared ones are never disturbed.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Postgres,
    Mariadb,
}

/// A database created for one test on a server, dropped when the test ends.
pub struct TempDb {
    pub engine: Engine,
    pub name: String,
    pub port: u16,
    /// Unix socket folder of a private PostgreSQL (its superuser connects there).
    socket: Option<PathBuf>,
    superuser: String,
}

fn unique(tag: &str) -> String {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("sc_{tag}_{}_{n}", std::process::id())
}

impl TempDb {
    /// A new database on the shared server of `engine`.
    pub fn new(engine: Engine, tag: &str) -> TempDb {
        let (port, superuser) = match engine {
            Engine::Postgres => (5432, "postgres"),
            Engine::Mariadb => (3306, "root"),
        };
        let db = TempDb {
            engine,
            name: unique(tag),
            port,
            socket: None,
            superuser: superuser.into(),
        };
        db.admin(&format!("CREATE DATABASE {}", db.name));
        db
    }

    /// The URL sandcrawl writes to, as the superuser.
    pub fn url(&self) -> String {
        self.url_as(&self.superuser, None)
    }

    pub fn url_as(&self, user: &str, password: Option<&str>) -> String {
        let auth = match password {
            Some(p) => format!("{user}:{p}"),
            None => user.to_owned(),
        };
        match self.engine {
            Engine::Postgres => format!("postgres://{auth}@127.0.0.1:{}/{}", self.port, self.name),
            Engine::Mariadb => format!("mysql://{auth}@127.0.0.1:{}/{}", self.port, self.name),
        }
    }

    /// Runs `sql` in this database and returns its rows, tab-separated, one per line.
    pub fn query(&self, sql: &str) -> String {
        self.client(Some(&self.name), sql)
    }

    /// Runs `sql` on the server, outside this database.
    pub fn admin(&self, sql: &str) -> String {
        self.client(None, sql)
    }

    pub fn count(&self, sql: &str) -> u64 {
        let out = self.query(sql);
        out.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{sql}: not a count: {out:?}"))
    }

    fn client(&self, db: Option<&str>, sql: &str) -> String {
        let mut cmd = match self.engine {
            Engine::Postgres => {
                let mut c = Command::new("psql");
                let host = self
                    .socket
                    .as_ref()
                    .map_or("127.0.0.1".to_owned(), |s| s.display().to_string());
                c.args([
                    "-h",
                    &host,
                    "-p",
                    &self.port.to_string(),
                    "-U",
                    &self.superuser,
                ])
                .args(["-v", "ON_ERROR_STOP=1", "-tAq", "-F", "\t", "-c", sql])
                .args(["-d", db.unwrap_or("postgres")]);
                c
            }
            Engine::Mariadb => {
                let mut c = Command::new("mariadb");
                c.args([
                    "-h",
                    "127.0.0.1",
                    "-P",
                    &self.port.to_string(),
                    "-u",
                    "root",
                ])
                .args(["-N", "-B", "-e", sql]);
                if let Some(d) = db {
                    c.arg(d);
                }
                c
            }
        };
        let out = cmd
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run the {:?} client: {e}", self.engine));
        assert!(
            out.status.success(),
            "{sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim_end().to_owned()
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        let sql = match self.engine {
            Engine::Postgres => format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
            Engine::Mariadb => format!("DROP DATABASE IF EXISTS {}", self.name),
        };
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.admin(&sql)));
    }
}

/// A free TCP port on 127.0.0.1 (bound, read, released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn pg_bin(name: &str) -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin").join(name))
        .filter(|p| p.is_file())
        .collect();
    found.sort();
    found.pop().unwrap_or_else(|| PathBuf::from(name))
}

/// A PostgreSQL server of the test's own: its data in a temp dir, on a free port, with
/// password (scram) authentication, run as the `postgres` system user (PostgreSQL refuses
/// root). Stopped and removed on drop.
pub struct PrivatePg {
    dir: PathBuf,
    pub port: u16,
    pub password: String,
}

impl PrivatePg {
    pub fn start(tag: &str) -> PrivatePg {
        let dir = PathBuf::from(format!("/tmp/{}", unique(tag)));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("pg dir");
        let password = "s3cret-pw".to_owned();
        std::fs::write(dir.join("pw"), &password).expect("pw file");
        as_postgres(
            &[
                "chown",
                "-R",
                "postgres:postgres",
                &dir.display().to_string(),
            ],
            true,
        );
        let data = dir.join("data").display().to_string();
        let pwfile = dir.join("pw").display().to_string();
        as_postgres(
            &[
                &pg_bin("initdb").display().to_string(),
                "-D",
                &data,
                "-U",
                "postgres",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--pwfile",
                &pwfile,
                "-E",
                "UTF8",
                "--no-sync",
            ],
            false,
        );
        let pg = PrivatePg {
            dir,
            port: free_port(),
            password,
        };
        pg.start_server();
        pg
    }

    /// Starts (or restarts) the server on its port and waits until it takes connections.
    pub fn start_server(&self) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.display()
        );
        as_postgres(
            &[
                &pg_bin("pg_ctl").display().to_string(),
                "-D",
                &self.dir.join("data").display().to_string(),
                "-o",
                &opts,
                "-l",
                &self.dir.join("log").display().to_string(),
                "-w",
                "-t",
                "60",
                "start",
            ],
            false,
        );
    }

    /// Stops the server at once (clients are cut off mid-transaction).
    pub fn stop_server(&self) {
        as_postgres(
            &[
                &pg_bin("pg_ctl").display().to_string(),
                "-D",
                &self.dir.join("data").display().to_string(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
            true,
        );
    }

    /// A database on this server, reached by its superuser over the socket.
    pub fn database(&self, tag: &str) -> TempDb {
        let db = TempDb {
            engine: Engine::Postgres,
            name: unique(tag),
            port: self.port,
            socket: Some(self.dir.clone()),
            superuser: "postgres".into(),
        };
        db.admin(&format!("CREATE DATABASE {}", db.name));
        db
    }
}

impl Drop for PrivatePg {
    fn drop(&mut self) {
        self.stop_server();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs a command as the `postgres` system user (or as is, when not root).
fn as_postgres(args: &[&str], may_fail: bool) {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0"))
        .unwrap_or(false);
    let mut cmd = if root && args[0] != "chown" {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).args(args);
        c
    } else {
        let mut c = Command::new(args[0]);
        c.args(&args[1..]);
        c
    };
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", args[0]));
    if !may_fail {
        assert!(
            out.status.success(),
            "{args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Waits (bounded) until `f` is true.
pub fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// A MariaDB server of the test's own (`mariadb-install-db`, then `mariadbd` on a free port,
/// its data in a temp dir; root with an empty password). Killed and removed on drop.
pub struct PrivateMariadb {
    dir: PathBuf,
    pub port: u16,
    child: std::sync::Mutex<Option<std::process::Child>>,
}

impl PrivateMariadb {
    pub fn start(tag: &str) -> PrivateMariadb {
        let dir = PathBuf::from(format!("/tmp/{}", unique(tag)));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("mariadb dir");
        let out = Command::new("mariadb-install-db")
            .args(["--no-defaults", "--auth-root-authentication-method=normal"])
            .args(["--skip-test-db", "--user=root"])
            .arg(format!("--datadir={}", dir.join("data").display()))
            .stdin(Stdio::null())
            .output()
            .expect("run mariadb-install-db");
        assert!(
            out.status.success(),
            "mariadb-install-db: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let db = PrivateMariadb {
            dir,
            port: free_port(),
            child: std::sync::Mutex::new(None),
        };
        db.start_server();
        db
    }

    /// Starts the server and waits (bounded) until it answers.
    // The child is kept in `self.child` and reaped by `stop_server` (also on drop).
    #[allow(clippy::zombie_processes)]
    pub fn start_server(&self) {
        let server = ["/usr/sbin/mariadbd", "mariadbd"]
            .into_iter()
            .find(|p| std::path::Path::new(p).is_file())
            .unwrap_or("mariadbd");
        let child = Command::new(server)
            .arg("--no-defaults")
            .arg(format!("--datadir={}", self.dir.join("data").display()))
            .arg(format!("--socket={}", self.dir.join("sock").display()))
            .arg(format!("--pid-file={}", self.dir.join("pid").display()))
            .arg(format!(
                "--log-error={}",
                self.dir.join("err.log").display()
            ))
            .arg(format!("--port={}", self.port))
            .args(["--bind-address=127.0.0.1", "--user=root", "--skip-log-bin"])
            .args(["--innodb-buffer-pool-size=16M"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mariadbd");
        if let Ok(mut c) = self.child.lock() {
            *c = Some(child);
        }
        let port = self.port;
        let up = wait_until(Duration::from_secs(60), || {
            Command::new("mariadb")
                .args([
                    "-h",
                    "127.0.0.1",
                    "-P",
                    &port.to_string(),
                    "-u",
                    "root",
                    "-e",
                    "SELECT 1",
                ])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        });
        assert!(up, "the private MariaDB did not start");
    }

    /// Kills the server at once (clients are cut off mid-transaction).
    pub fn stop_server(&self) {
        if let Ok(mut c) = self.child.lock()
            && let Some(mut child) = c.take()
        {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// A database on this server.
    pub fn database(&self, tag: &str) -> TempDb {
        let db = TempDb {
            engine: Engine::Mariadb,
            name: unique(tag),
            port: self.port,
            socket: None,
            superuser: "root".into(),
        };
        db.admin(&format!("CREATE DATABASE {}", db.name));
        db
    }
}

impl Drop for PrivateMariadb {
    fn drop(&mut self) {
        self.stop_server();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
