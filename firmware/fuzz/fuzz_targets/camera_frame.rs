#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| vigil::fuzzing::camera_frame(data));
