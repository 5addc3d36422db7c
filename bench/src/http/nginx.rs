//! nginx as the HTTP scenario runs it: one worker process, pinned, serving the site.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};

use super::{NGINX_PORT, SMALL_FILE, curl_status};
use crate::{
    netns::{SERVER_ADDR, VethPair},
    process::{ChildGuard, require_program},
};

/// nginx with one worker process (`master_process off`: the one process serves), pinned to
/// `core`, serving `site` on the server address; stopped on drop.
pub struct Nginx {
    guard: ChildGuard,
    dir: PathBuf,
}

impl Nginx {
    pub fn start(pair: &VethPair, site: &Path, core: usize) -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("fastpath-nginx-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let d = dir.display();
        let conf = format!(
            "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
events {{ worker_connections 8192; multi_accept on; }}\n\
http {{\n  access_log off;\n  sendfile on;\n  tcp_nopush on;\n  tcp_nodelay on;\n  keepalive_timeout 65;\n  keepalive_requests 10000000;\n  open_file_cache max=64;\n\
  types {{ text/html html; text/plain txt; application/octet-stream bin; }}\n  default_type application/octet-stream;\n\
  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
  server {{ listen {SERVER_ADDR}:{NGINX_PORT} backlog=4096; root {root}; }}\n}}\n",
            root = site.display()
        );
        std::fs::write(dir.join("nginx.conf"), conf)?;
        let child = pair
            .server_command("taskset")
            .args(["-c", &core.to_string()])
            .arg(require_program("nginx", "nginx-light")?)
            .arg("-e")
            .arg(dir.join("error.log"))
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("cannot start nginx (install it with `cargo xtask deps`)")?;
        let mut nginx = Self {
            guard: ChildGuard::new("nginx", child),
            dir,
        };
        // Ready when it answers.
        let start = Instant::now();
        loop {
            if nginx.guard.exited() {
                let log = std::fs::read_to_string(nginx.dir.join("error.log")).unwrap_or_default();
                bail!("nginx exited at start: {}", log.trim());
            }
            if curl_status(pair, NGINX_PORT, SMALL_FILE).is_ok_and(|s| s == 200) {
                return Ok(nginx);
            }
            if start.elapsed() > Duration::from_secs(10) {
                bail!("nginx did not answer on {SERVER_ADDR}:{NGINX_PORT} within 10 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.guard.pid()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        self.guard.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
