//! Kubernetes Events about ensembles, grouped only when they say the same thing.
//!
//! kube's [`Recorder`] folds Events with the same type, reason, action and object into one
//! Event with a count, for six minutes, and keeps the first Event's note. For Zooherd that
//! would lie: a second `ACTIVE -> DEGRADED` within minutes would show the members that failed
//! the first time, and a second `MemberRestarted` the first pod's name (the end-to-end test
//! caught it). So an Event joins a series only when its note is the one last published for
//! that key; a different note starts a new Event. Each key has a recorder of its own, so
//! starting anew is replacing that recorder.
//!
//! A recorder keeps the last Event it published (a few KB) for its series. A series not added
//! to for [`SERIES_WINDOW`] is over (kube's recorder would start a new Event), so its recorder
//! is dropped then, by a sweep every minute ([`EventPublisher::drop_ended`]): kept for ever,
//! they held about 12 KB per ensemble (`cargo bench --bench scale`, heaptrack). A publish does
//! not sweep (a scan of every series for each Event, when a thousand ensembles change at
//! once); a series over but not yet swept is harmless to add to, as its recorder then starts a
//! new Event itself.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};

/// What kube's recorder groups by, less the reporter (always this operator).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct SeriesKey {
    namespace: String,
    name: String,
    type_: &'static str,
    reason: String,
    action: String,
}

/// How long kube's recorder folds an Event into the previous one of its series (its
/// `CACHE_TTL`, counted from the last time it was published).
pub const SERIES_WINDOW: Duration = Duration::from_secs(6 * 60);

/// A series of Events with one key: the note last published, the recorder that holds the
/// series, and when it was last published.
struct Series {
    note: String,
    recorder: Recorder,
    published: Instant,
}

/// Publishes Events; see the module documentation.
pub struct EventPublisher {
    client: Client,
    reporter: Reporter,
    series: Mutex<HashMap<SeriesKey, Series>>,
}

impl EventPublisher {
    pub fn new(client: Client, reporter: Reporter) -> Self {
        EventPublisher {
            client,
            reporter,
            series: Mutex::new(HashMap::new()),
        }
    }

    pub async fn publish(
        &self,
        event: &Event,
        reference: &ObjectReference,
    ) -> Result<(), kube::Error> {
        let key = SeriesKey {
            namespace: reference.namespace.clone().unwrap_or_default(),
            name: reference.name.clone().unwrap_or_default(),
            type_: match event.type_ {
                EventType::Normal => "Normal",
                EventType::Warning => "Warning",
            },
            reason: event.reason.clone(),
            action: event.action.clone(),
        };
        let note = event.note.clone().unwrap_or_default();
        let recorder = self.recorder(key, note, Instant::now());
        recorder.publish(event, reference).await
    }

    /// Drops the series that are over at `now`.
    pub fn drop_ended(&self, now: Instant) {
        let mut series = self.series.lock().expect("event series lock");
        series.retain(|_, series| now.saturating_duration_since(series.published) < SERIES_WINDOW);
    }

    /// The recorder of the series an Event with `key` and `note` joins at `now` (a new one if
    /// the last note of that key was another).
    fn recorder(&self, key: SeriesKey, note: String, now: Instant) -> Recorder {
        let mut series = self.series.lock().expect("event series lock");
        match series.get_mut(&key) {
            Some(same) if same.note == note => {
                same.published = now;
                same.recorder.clone()
            }
            _ => {
                let recorder = Recorder::new(self.client.clone(), self.reporter.clone());
                let new = Series {
                    note,
                    recorder: recorder.clone(),
                    published: now,
                };
                series.insert(key, new);
                recorder
            }
        }
    }

    /// Drops the series of a deleted object.
    pub fn forget(&self, namespace: &str, name: &str) {
        self.series
            .lock()
            .expect("event series lock")
            .retain(|key, _| key.namespace != namespace || key.name != name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> SeriesKey {
        SeriesKey {
            namespace: "ns".into(),
            name: name.into(),
            type_: "Normal",
            reason: "PhaseChanged".into(),
            action: "Reconcile".into(),
        }
    }

    /// A publisher whose client is never called (it needs a runtime all the same): only the
    /// series are looked at.
    fn publisher() -> EventPublisher {
        let service = tower::service_fn(|_: http::Request<kube::client::Body>| async {
            Err::<http::Response<kube::client::Body>, std::io::Error>(std::io::Error::other(
                "no API server in this test",
            ))
        });
        let client = Client::new(service, "default");
        EventPublisher::new(client, "zooherd".into())
    }

    fn kept(publisher: &EventPublisher) -> Vec<String> {
        let series = publisher.series.lock().unwrap();
        let mut names: Vec<String> = series
            .iter()
            .map(|(key, series)| format!("{}: {}", key.name, series.note))
            .collect();
        names.sort();
        names
    }

    #[tokio::test]
    async fn a_series_is_dropped_once_kube_would_no_longer_add_to_it() {
        let publisher = publisher();
        let start = Instant::now();
        let minutes = |m: u64| start + Duration::from_secs(m * 60);
        publisher.recorder(key("a"), "ACTIVE".into(), minutes(0));
        publisher.recorder(key("b"), "ACTIVE".into(), minutes(0));
        // Added to within the window: the series of b goes on.
        publisher.recorder(key("b"), "ACTIVE".into(), minutes(5));
        publisher.recorder(key("c"), "DEGRADED".into(), minutes(6));
        publisher.drop_ended(minutes(6));
        assert_eq!(kept(&publisher), ["b: ACTIVE", "c: DEGRADED"]);
        // Another note starts another series of the same key.
        publisher.recorder(key("c"), "ACTIVE".into(), minutes(7));
        publisher.drop_ended(minutes(7));
        assert_eq!(kept(&publisher), ["b: ACTIVE", "c: ACTIVE"]);
        // Nothing published for a while: the sweep drops what is over.
        publisher.drop_ended(minutes(12));
        assert_eq!(kept(&publisher), ["c: ACTIVE"]);
        publisher.drop_ended(minutes(13));
        assert!(kept(&publisher).is_empty());
    }
}
