//! Kubernetes Events about ensembles, grouped only when they say the same thing.
//!
//! kube's [`Recorder`] folds Events with the same type, reason, action and object into one
//! Event with a count, for six minutes, and keeps the first Event's note. For Zooherd that
//! would lie: a second `ACTIVE -> DEGRADED` within minutes would show the members that failed
//! the first time, and a second `MemberRestarted` the first pod's name (the end-to-end test
//! caught it). So an Event joins a series only when its note is the one last published for
//! that key; a different note starts a new Event. Each key has a recorder of its own, so
//! starting anew is replacing that recorder.

use std::collections::HashMap;
use std::sync::Mutex;

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

/// Publishes Events; see the module documentation.
pub struct EventPublisher {
    client: Client,
    reporter: Reporter,
    /// Per key: the note last published, and the recorder that holds its series.
    series: Mutex<HashMap<SeriesKey, (String, Recorder)>>,
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
        let recorder = {
            let mut series = self.series.lock().expect("event series lock");
            match series.get(&key) {
                Some((last, recorder)) if *last == note => recorder.clone(),
                _ => {
                    let recorder = Recorder::new(self.client.clone(), self.reporter.clone());
                    series.insert(key, (note, recorder.clone()));
                    recorder
                }
            }
        };
        recorder.publish(event, reference).await
    }

    /// Drops the series of a deleted object.
    pub fn forget(&self, namespace: &str, name: &str) {
        self.series
            .lock()
            .expect("event series lock")
            .retain(|key, _| key.namespace != namespace || key.name != name);
    }
}
