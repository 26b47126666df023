// SPDX-License-Identifier: MIT OR Apache-2.0
//! Events on buffers: `crossingcount` attaches the events of a frame in a
//! `GstGkvEventsMeta` (a custom meta holding them as a `gkv.events` JSON array in its `json`
//! field, so C and Python read them too); `eventsconvert` turns them into records.

use super::Event;

/// Name of the custom meta holding a frame's events.
pub const EVENTS_META: &str = "GstGkvEventsMeta";

/// Registers the meta; idempotent and safe from any thread.
pub fn register() {
    static REGISTERED: std::sync::Once = std::sync::Once::new();
    REGISTERED.call_once(|| {
        if !gst::meta::CustomMeta::is_registered(EVENTS_META) {
            gst::meta::CustomMeta::register_simple(EVENTS_META);
        }
    });
}

/// The events of `buffer`, in the order they happened.
pub fn of_buffer(buffer: &gst::BufferRef) -> Vec<Event> {
    gst::meta::CustomMeta::from_buffer(buffer, EVENTS_META)
        .ok()
        .and_then(|meta| meta.structure().get::<String>("json").ok())
        .and_then(|json| serde_json::from_str(&json).ok())
        .unwrap_or_default()
}

/// Adds `events` to those `buffer` holds already.
pub fn add(buffer: &mut gst::BufferRef, events: &[Event]) {
    if events.is_empty() {
        return;
    }
    register();
    let mut all = of_buffer(buffer);
    all.extend_from_slice(events);
    while let Ok(meta) = gst::meta::CustomMeta::from_mut_buffer(buffer, EVENTS_META) {
        if meta.remove().is_err() {
            break;
        }
    }
    if let Ok(mut meta) = gst::meta::CustomMeta::add(buffer, EVENTS_META) {
        let json = serde_json::to_string(&all).expect("plain data always serialises");
        meta.mut_structure().set("json", json);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::EventKind;

    #[test]
    fn events_accumulate_on_a_buffer() {
        gst::init().unwrap();
        let mut buffer = gst::Buffer::new();
        assert!(of_buffer(&buffer).is_empty());
        let first = Event::new(EventKind::ZoneEntered, 1, "car");
        let second = Event::new(EventKind::LineCrossed, 2, "bus");
        add(buffer.get_mut().unwrap(), std::slice::from_ref(&first));
        add(buffer.get_mut().unwrap(), std::slice::from_ref(&second));
        assert_eq!(of_buffer(&buffer), vec![first, second]);
    }
}
