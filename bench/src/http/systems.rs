//! The two systems the HTTP scenario compares, `fastpath serve` and nginx, and starting
//! either on the pair.

use std::path::Path;

use super::{FASTPATH_PORT, HttpSettings, NGINX_PORT, Nginx, SiteDir};
use crate::{netns::VethPair, process::FastpathProcess};

/// `fastpath serve` with one worker pinned to `core`, serving `site`.
pub fn start_fastpath(
    pair: &VethPair,
    site: &Path,
    core: usize,
    extra: &[String],
) -> anyhow::Result<FastpathProcess> {
    let mut args: Vec<String> = vec![
        "--port".into(),
        FASTPATH_PORT.to_string(),
        "--root".into(),
        site.display().to_string(),
        "--queues".into(),
        "1".into(),
        "--cpus".into(),
        core.to_string(),
    ];
    args.extend(extra.iter().cloned());
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    FastpathProcess::start(pair, "serve", &refs)
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum HttpSystem {
    Fastpath,
    Nginx,
}

impl HttpSystem {
    pub(super) fn name(self) -> &'static str {
        match self {
            HttpSystem::Fastpath => "fastpath",
            HttpSystem::Nginx => "nginx",
        }
    }

    pub(super) fn port(self) -> u16 {
        match self {
            HttpSystem::Fastpath => FASTPATH_PORT,
            HttpSystem::Nginx => NGINX_PORT,
        }
    }
}

/// One system running on the pair.
pub(super) enum Running {
    Fastpath(FastpathProcess),
    Nginx(Nginx),
}

impl Running {
    pub(super) fn start(
        system: HttpSystem,
        pair: &VethPair,
        site: &SiteDir,
        s: &HttpSettings,
    ) -> anyhow::Result<Self> {
        Ok(match system {
            HttpSystem::Fastpath => Running::Fastpath(start_fastpath(
                pair,
                &site.path,
                s.server_core,
                &s.fastpath_args,
            )?),
            HttpSystem::Nginx => Running::Nginx(Nginx::start(pair, &site.path, s.server_core)?),
        })
    }

    pub(super) fn pid(&self) -> Option<u32> {
        match self {
            Running::Fastpath(p) => p.pid(),
            Running::Nginx(n) => n.pid(),
        }
    }
}
