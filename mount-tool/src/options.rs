//! `-o` mount options -> the bridge's mount configuration.

use anyhow::{bail, Context, Result};
use scheme_bridge::fuse::MountConfig;

/// Options for the built-in daemons.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct DaemonOptions {
    /// ramfs: `-o max_bytes=N`.
    pub(crate) max_bytes: Option<u64>,
    /// Limits on each daemon connection: `-o max_requests=N,call_timeout=S`.
    pub(crate) limits: scheme_bridge::Limits,
    /// How long each end of a daemon's wire busy-polls before blocking: `-o busy_poll=US`.
    pub(crate) busy_poll: Option<std::time::Duration>,
    /// `-o noregion`: large payloads go through the pipe, not a shared memory region.
    pub(crate) no_region: bool,
    /// `-o noring`: frames go through the pipe, not the region's rings.
    pub(crate) no_ring: bool,
}

/// Parses every `-o` argument (each a comma-separated list) into `config` and `daemon`.
pub(crate) fn apply(
    config: &mut MountConfig,
    daemon: &mut DaemonOptions,
    options: &[String],
) -> Result<()> {
    for option in options.iter().flat_map(|list| list.split(',')).filter(|o| !o.is_empty()) {
        let (key, value) = match option.split_once('=') {
            Some((key, value)) => (key, Some(value)),
            None => (option, None),
        };
        match (key, value) {
            ("ro", None) => config.options.read_only = true,
            ("rw", None) => config.options.read_only = false,
            ("allow_other", None) => config.options.allow_other = true,
            ("default_permissions", None) => config.options.default_permissions = true,
            ("noauto_unmount", None) => config.options.auto_unmount = false,
            ("nointr", None) => config.interrupts = false,
            ("intr", None) => config.interrupts = true,
            ("entry_timeout", Some(v)) => config.ttl.entry = seconds(key, v)?,
            ("attr_timeout", Some(v)) => config.ttl.attr = seconds(key, v)?,
            ("uid", Some(v)) => config.uid = Some(number(key, v)?),
            ("gid", Some(v)) => config.gid = Some(number(key, v)?),
            ("max_write", Some(v)) => config.max_write = number(key, v)?,
            ("read_ahead_kb", Some(v)) => config.read_ahead_kb = Some(number(key, v)?),
            ("max_bytes", Some(v)) => {
                daemon.max_bytes = Some(v.parse().with_context(|| format!("option max_bytes={v}: not a number"))?)
            }
            ("max_requests", Some(v)) => {
                let max = number(key, v)?.max(1) as usize;
                config.limits.max_requests = max;
                daemon.limits.max_outstanding = max;
            }
            ("max_handles", Some(v)) => {
                config.limits.max_handles_per_uid = number(key, v)?.max(1) as usize;
            }
            ("call_timeout", Some(v)) => {
                let timeout = seconds(key, v)?;
                daemon.limits.call_timeout = (!timeout.is_zero()).then_some(timeout);
            }
            ("noregion", None) => daemon.no_region = true,
            ("noring", None) => daemon.no_ring = true,
            ("busy_poll", Some(v)) => {
                daemon.busy_poll = Some(std::time::Duration::from_micros(number(key, v)?.into()));
            }
            (key, _) => bail!("unknown mount option {key:?} (known: ro, allow_other, default_permissions, uid=N, gid=N, max_write=N, read_ahead_kb=N, max_bytes=N, entry_timeout=S, attr_timeout=S, noauto_unmount, intr, nointr, max_requests=N, max_handles=N, call_timeout=S, busy_poll=US, noregion, noring)"),
        }
    }
    Ok(())
}

fn seconds(key: &str, value: &str) -> Result<std::time::Duration> {
    let secs: f64 =
        value.parse().with_context(|| format!("option {key}={value}: not a number of seconds"))?;
    std::time::Duration::try_from_secs_f64(secs)
        .with_context(|| format!("option {key}={value}: out of range"))
}

fn number(key: &str, value: &str) -> Result<u32> {
    value.parse().with_context(|| format!("option {key}={value}: not a number"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_options() {
        let mut config = MountConfig::default();
        let opts = vec!["ro,allow_other".to_owned(), "uid=7,gid=8,default_permissions".to_owned()];
        apply(&mut config, &mut DaemonOptions::default(), &opts).unwrap();
        assert!(config.options.read_only && config.options.allow_other);
        assert!(config.options.default_permissions);
        assert_eq!((config.uid, config.gid), (Some(7), Some(8)));
    }

    #[test]
    fn read_ahead_takes_kib() {
        let mut config = MountConfig::default();
        assert_eq!(config.read_ahead_kb, None, "by default as large as max_write");
        let opts = ["read_ahead_kb=4096".to_owned()];
        apply(&mut config, &mut DaemonOptions::default(), &opts).unwrap();
        assert_eq!(config.read_ahead_kb, Some(4096));
        let bad = ["read_ahead_kb=lots".to_owned()];
        assert!(apply(&mut config, &mut DaemonOptions::default(), &bad).is_err());
    }

    #[test]
    fn busy_poll_takes_microseconds() {
        let mut daemon = DaemonOptions::default();
        apply(&mut MountConfig::default(), &mut daemon, &["busy_poll=0".to_owned()]).unwrap();
        assert_eq!(daemon.busy_poll, Some(std::time::Duration::ZERO));
        apply(&mut MountConfig::default(), &mut daemon, &["busy_poll=75".to_owned()]).unwrap();
        assert_eq!(daemon.busy_poll, Some(std::time::Duration::from_micros(75)));
        let err = apply(&mut MountConfig::default(), &mut daemon, &["busy_poll=-1".to_owned()]);
        assert!(err.unwrap_err().to_string().contains("not a number"));
    }

    #[test]
    fn refuses_unknown_options_and_bad_numbers() {
        let mut config = MountConfig::default();
        let err =
            apply(&mut config, &mut DaemonOptions::default(), &["bogus".to_owned()]).unwrap_err();
        assert!(err.to_string().contains("unknown mount option \"bogus\""), "{err}");
        let err =
            apply(&mut config, &mut DaemonOptions::default(), &["uid=me".to_owned()]).unwrap_err();
        assert!(err.to_string().contains("not a number"), "{err}");
    }
}
