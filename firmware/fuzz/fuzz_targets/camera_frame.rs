#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| vigil_daemon::fuzzing::camera_frame(data));
