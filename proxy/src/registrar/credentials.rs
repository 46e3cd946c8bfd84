//! The credentials file: HA1 hashes per realm, user and algorithm, never
//! clear-text passwords. One line per (user, realm, algorithm):
//! `user:realm:ALGORITHM:ha1hex` (`#` comments). Read with the mode check
//! of secrets; reloaded on SIGHUP. SKELETON.
#![allow(unused_variables)]

use std::path::Path;

use sipcore::digest::Algorithm;

use crate::config::ConfigError;

#[derive(Debug, Clone, Default)]
pub struct Credentials {}

impl Credentials {
    /// Reads `path`; errors name the file and line.
    pub fn load(path: &Path) -> Result<Credentials, ConfigError> {
        todo!()
    }

    /// The HA1 of `user` in `realm` for `algorithm`.
    pub fn ha1(&self, realm: &str, user: &str, algorithm: Algorithm) -> Option<&str> {
        todo!()
    }

    /// Users in all.
    pub fn len(&self) -> usize {
        todo!()
    }
}

/// The lines `tandem passwd` appends for a user: one per algorithm.
pub fn passwd_lines(user: &str, realm: &str, password: &str) -> String {
    todo!()
}
