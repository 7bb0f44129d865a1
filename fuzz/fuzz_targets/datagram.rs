//! Any datagram: parsed without a panic, and what parses is written back the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use superpeer::wire;

fuzz_target!(|data: &[u8]| {
    if let Ok(message) = wire::parse(data) {
        let again = wire::parse(&message.encode()).expect("an encoded message parses");
        assert_eq!(again, message);
    }
});
