//! Log setup: timestamped lines on stderr, one line per event.
//!
//! stderr is wrapped in a `LineWriter` so each line reaches `docker logs` in a
//! single write and lines from PID 1 and the main child never interleave.

use log::LevelFilter;
use simplelog::{ConfigBuilder, WriteLogger};
use std::io::LineWriter;

pub fn init(level: LevelFilter) {
    let config = ConfigBuilder::new()
        .set_time_format_rfc3339()
        .set_target_level(LevelFilter::Off)
        .set_thread_level(LevelFilter::Off)
        .set_location_level(LevelFilter::Off)
        .build();
    // Fails only if a logger is already installed, which cannot happen here.
    let _ = WriteLogger::init(level, config, LineWriter::new(std::io::stderr()));
}
