//! Parts of the `host` binary that are not library API: the terminal
//! renderer of events. (This directory is compiled only into the binary.)

pub mod progress;
