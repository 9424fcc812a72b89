//! A local S3-compatible server (s3s-fs, installed into the venv by `scripts/setup`) on
//! 127.0.0.1 for the streaming benchmark; stopped and its folder removed when dropped.

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::paths;

const ACCESS_KEY: &str = "arl-bench";
const SECRET_KEY: &str = "arl-bench-secret-key";

/// A running server with one bucket.
pub struct LocalS3 {
    child: Child,
    /// The server's files, removed after the server is stopped (fields drop after `drop`).
    _root: tempfile::TempDir,
    port: u16,
}

impl LocalS3 {
    /// Starts s3s-fs with `bucket` and waits until it accepts connections.
    ///
    /// # Errors
    /// s3s-fs is missing, or does not listen within 10 s.
    pub fn start(bucket: &str) -> anyhow::Result<Self> {
        let binary = paths::project_file(".venv/bin/s3s-fs")?;
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let root = crate::bench::private_dir("arl-bench-s3-")?;
        std::fs::create_dir_all(root.path().join(bucket))
            .with_context(|| format!("creating {}", root.path().display()))?;
        let child = Command::new(&binary)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(root.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let server = Self {
            child,
            _root: root,
            port,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                bail!(
                    "{} did not listen on port {port} within 10 s",
                    binary.display()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(server)
    }

    /// The object-store environment of a client process.
    pub fn env(&self) -> [(&'static str, String); 5] {
        [
            ("AWS_ENDPOINT", format!("http://127.0.0.1:{}", self.port)),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY.to_owned()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.to_owned()),
            ("AWS_ALLOW_HTTP", "true".to_owned()),
            ("AWS_REGION", "us-east-1".to_owned()),
        ]
    }
}

impl Drop for LocalS3 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
