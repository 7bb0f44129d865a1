//! Any registration body: refused with a 400, or registered so that every id it lists is
//! found at its location, and registering it again changes nothing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use superpeer::index::Index;
use superpeer::parse_registration;

fuzz_target!(|data: &[u8]| {
    let registration = match parse_registration(data) {
        Ok(registration) => registration,
        Err(e) => {
            assert_eq!(e.status(), 400);
            return;
        }
    };
    let ids: Vec<_> = registration.resources.iter().map(|r| r.id).collect();
    // An accepted location is an address in its one spelling: it reads back the same.
    let location = registration.location.to_string();
    assert_eq!(
        superpeer::location::parse(&location),
        Ok(registration.location)
    );
    let source = Some(registration.location.ip());
    let mut index = Index::new();
    for round in 0..2 {
        let resources = registration
            .resources
            .iter()
            .map(|r| (r.id, r.name.clone()));
        let again = index.register(&location, source, registration.name.clone(), resources);
        assert_eq!(again, round == 1);
        for id in &ids {
            let found = index.lookup(id).expect("a registered id is found");
            assert!(found.locations.iter().any(|l| *l == location));
        }
        assert!(index.resource_count() <= ids.len());
        assert!(index.is_registered(&location));
        assert_eq!(index.usage_of(registration.location.ip()).nodes, 1);
    }
    assert_eq!(index.remove_node(&location).is_some(), true);
    assert_eq!(index.resource_count(), 0);
    assert_eq!(index.usage_of(registration.location.ip()).nodes, 0);
});
