// SPDX-License-Identifier: MIT OR Apache-2.0
//! The state topic as the elements of one process share it: parts staged per camera and
//! written as one record when all are in, the records of other workers read back, and the
//! frames a saved state includes released for commit only once the broker has it.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, Weak};
use std::time::{Duration, Instant};

use kafkavision::client_config::ClientConfig;
use kafkavision::meta::RecordHold;
use rdkafka::ClientContext;
use rdkafka::config::ClientConfig as KafkaConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use super::{Position, SCHEMA, SCHEMA_VERSION, SavePolicy, StateRecord};

/// How a pipeline's elements reach their state topic (the `state-*` properties).
#[derive(Clone, Debug, PartialEq)]
pub struct StoreSettings {
    pub brokers: String,
    pub topic: String,
    /// librdkafka settings, `${NAME}` already read from the environment.
    pub config: ClientConfig,
    pub policy: SavePolicy,
    /// Longest wait for the broker when reading the topic back or flushing at stop.
    pub timeout: Duration,
}

/// Pending parts older than this are given up (the element that should add its part
/// stopped seeing the camera): their frames are released without a save.
const PENDING_LIMIT: Duration = Duration::from_secs(120);

/// What [`StateStore::restore`] found for a camera.
#[derive(Clone, Debug)]
pub enum Restored {
    /// No state was saved for it: it starts from scratch.
    Nothing,
    Found(Arc<StateRecord>),
    /// A record is there but unusable (garbage, a newer version, another camera's): it
    /// starts from scratch, and the reason is warned about once.
    Unusable(String),
}

/// Counters for the elements' `stats`.
#[derive(Default, Debug)]
pub struct StoreStats {
    pub saved: AtomicU64,
    pub saved_bytes: AtomicU64,
    pub save_failures: AtomicU64,
    pub restored: AtomicU64,
    pub unusable: AtomicU64,
    pub superseded: AtomicU64,
}

struct Staged {
    position: Position,
    parts: BTreeMap<String, serde_json::Value>,
    holds: Vec<RecordHold>,
    since: Instant,
}

#[derive(Default)]
struct Shared {
    /// Part names of the elements that joined, with how many elements of each.
    members: BTreeMap<String, usize>,
    staged: HashMap<String, Staged>,
    restored: HashMap<String, Restored>,
}

/// The latest record of every camera in the topic, as far as it was read.
struct Reader {
    consumer: BaseConsumer,
    /// Asks for the topic's end offsets. A client of its own: on the reading consumer's
    /// connection the question waits behind a fetch the broker holds open for new records
    /// (up to fetch.wait.max.ms, 500 ms), for every camera restored.
    ends: BaseConsumer,
    partitions: Vec<i32>,
    /// Per partition, the next offset to read.
    next: HashMap<i32, i64>,
    latest: HashMap<String, Vec<u8>>,
}

struct SaveContext {
    /// Per camera, the holds of records whose save failed: kept until a later save of the
    /// camera lands, since its next state includes what the failed one held.
    failed_holds: Mutex<HashMap<String, Vec<RecordHold>>>,
    stats: Arc<StoreStats>,
}

impl ClientContext for SaveContext {}

struct SaveDelivery {
    camera: String,
    holds: Vec<RecordHold>,
    bytes: usize,
}

impl ProducerContext for SaveContext {
    type DeliveryOpaque = Box<SaveDelivery>;

    fn delivery(&self, result: &DeliveryResult<'_>, delivery: Box<SaveDelivery>) {
        match result {
            Ok(_) => {
                self.stats.saved.fetch_add(1, Ordering::Relaxed);
                self.stats
                    .saved_bytes
                    .fetch_add(delivery.bytes as u64, Ordering::Relaxed);
                // The saved state includes these frames: their records may be committed, and
                // so may those a failed save held.
                self.failed_holds.lock().unwrap().remove(&delivery.camera);
            }
            Err((error, _)) => {
                self.stats.save_failures.fetch_add(1, Ordering::Relaxed);
                warn_save_failed(&delivery.camera, error);
                let SaveDelivery { camera, holds, .. } = *delivery;
                self.failed_holds
                    .lock()
                    .unwrap()
                    .entry(camera)
                    .or_default()
                    .extend(holds);
            }
        }
    }
}

fn warn_save_failed(camera: &str, error: &KafkaError) {
    gst::warning!(
        *CAT,
        "Camera {camera:?}: its state could not be saved ({error}); its frames stay \
         uncommitted until a later save lands"
    );
}

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "camerastate",
        gst::DebugColorFlags::empty(),
        Some("Camera states saved to and restored from Kafka"),
    )
});

/// One state topic as this process's elements share it.
pub struct StateStore {
    settings: StoreSettings,
    producer: ThreadedProducer<SaveContext>,
    reader: Mutex<Reader>,
    shared: Mutex<Shared>,
    pub stats: Arc<StoreStats>,
}

type Registry = Mutex<HashMap<(String, String), Weak<StateStore>>>;
static STORES: LazyLock<Registry> = LazyLock::new(Default::default);

/// An element's place in a store; leaving it (drop) removes the element's part.
pub struct Membership {
    pub store: Arc<StateStore>,
    part: &'static str,
}

impl Drop for Membership {
    fn drop(&mut self) {
        let mut shared = self.store.shared.lock().unwrap();
        if let Some(n) = shared.members.get_mut(self.part) {
            *n -= 1;
            if *n == 0 {
                shared.members.remove(self.part);
            }
        }
    }
}

impl StateStore {
    /// Joins the store of `settings`' topic as `part`, creating it (and checking the topic
    /// exists) when this process has none yet.
    pub fn join(settings: &StoreSettings, part: &'static str) -> Result<Membership, String> {
        let mut stores = STORES.lock().unwrap();
        stores.retain(|_, store| store.strong_count() > 0);
        let key = (settings.brokers.clone(), settings.topic.clone());
        let store = match stores.get(&key).and_then(Weak::upgrade) {
            Some(store) => {
                if store.settings.policy != settings.policy {
                    gst::warning!(
                        *CAT,
                        "state-interval settings differ between elements saving to '{}'; the \
                         first element's apply",
                        settings.topic
                    );
                }
                store
            }
            None => {
                let store = Arc::new(StateStore::connect(settings)?);
                stores.insert(key, Arc::downgrade(&store));
                store
            }
        };
        *store
            .shared
            .lock()
            .unwrap()
            .members
            .entry(part.to_string())
            .or_default() += 1;
        Ok(Membership { store, part })
    }

    fn connect(settings: &StoreSettings) -> Result<StateStore, String> {
        let client = |extra: &[(&str, &str)]| {
            let mut config = KafkaConfig::new();
            config.set("bootstrap.servers", &settings.brokers);
            for (key, value) in extra {
                config.set(*key, *value);
            }
            for (key, value) in settings.config.entries() {
                config.set(key, value);
            }
            config
        };
        let stats = Arc::new(StoreStats::default());
        let producer: ThreadedProducer<SaveContext> =
            client(&[("enable.idempotence", "true"), ("linger.ms", "5")])
                .create_with_context(SaveContext {
                    failed_holds: Default::default(),
                    stats: stats.clone(),
                })
                .map_err(|e| format!("state-config: {e}"))?;
        let consumer: BaseConsumer = client(&[
            ("enable.auto.commit", "false"),
            ("enable.partition.eof", "false"),
            ("group.id", "gkv-camera-state-reader"),
        ])
        .create()
        .map_err(|e| format!("state-config: {e}"))?;
        let metadata = consumer
            .fetch_metadata(Some(&settings.topic), settings.timeout)
            .map_err(|e| {
                format!(
                    "state-brokers: no answer from {} within {:?} ({e})",
                    settings.brokers, settings.timeout
                )
            })?;
        let partitions: Vec<i32> = metadata
            .topics()
            .iter()
            .filter(|t| t.name() == settings.topic && t.error().is_none())
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        if partitions.is_empty() {
            return Err(format!(
                "state-topic '{}' does not exist on {}: create it with cleanup.policy=compact",
                settings.topic, settings.brokers
            ));
        }
        let mut assignment = TopicPartitionList::new();
        for p in &partitions {
            assignment
                .add_partition_offset(&settings.topic, *p, Offset::Beginning)
                .map_err(|e| e.to_string())?;
        }
        consumer.assign(&assignment).map_err(|e| e.to_string())?;
        let ends: BaseConsumer = client(&[("enable.auto.commit", "false")])
            .create()
            .map_err(|e| format!("state-config: {e}"))?;
        Ok(StateStore {
            settings: settings.clone(),
            producer,
            reader: Mutex::new(Reader {
                consumer,
                ends,
                next: partitions.iter().map(|p| (*p, 0)).collect(),
                partitions,
                latest: HashMap::new(),
            }),
            shared: Default::default(),
            stats,
        })
    }

    pub fn policy(&self) -> SavePolicy {
        self.settings.policy
    }

    /// The latest saved state of `camera`, read from the topic now (every part of the
    /// pipeline gets the same answer until the camera's state is saved again).
    pub fn restore(&self, camera: &str) -> Restored {
        if let Some(known) = self.shared.lock().unwrap().restored.get(camera) {
            return known.clone();
        }
        let restored = match self.latest(camera) {
            Err(e) => Restored::Unusable(e),
            Ok(None) => Restored::Nothing,
            Ok(Some(bytes)) => match StateRecord::from_json(&bytes, camera) {
                Ok(record) => Restored::Found(Arc::new(record)),
                Err(e) => Restored::Unusable(e),
            },
        };
        match &restored {
            Restored::Found(record) => {
                self.stats.restored.fetch_add(1, Ordering::Relaxed);
                gst::info!(
                    *CAT,
                    "Camera {camera:?}: state restored as of {:?}",
                    record.position
                );
            }
            Restored::Unusable(why) => {
                self.stats.unusable.fetch_add(1, Ordering::Relaxed);
                gst::warning!(
                    *CAT,
                    "Camera {camera:?}: its saved state in '{}' is skipped ({why}); it starts \
                     from scratch",
                    self.settings.topic
                );
            }
            Restored::Nothing => {}
        }
        self.shared
            .lock()
            .unwrap()
            .restored
            .insert(camera.to_string(), restored.clone());
        restored
    }

    /// The newest record of `camera` after reading the topic up to its end now.
    fn latest(&self, camera: &str) -> Result<Option<Vec<u8>>, String> {
        let mut reader = self.reader.lock().unwrap();
        let deadline = Instant::now() + self.settings.timeout;
        let topic = &self.settings.topic;
        let mut ends = HashMap::new();
        for p in reader.partitions.clone() {
            let (_, high) = reader
                .ends
                .fetch_watermarks(topic, p, self.settings.timeout)
                .map_err(|e| format!("could not read state-topic '{topic}': {e}"))?;
            ends.insert(p, high);
        }
        while ends.iter().any(|(p, high)| reader.next[p] < *high) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!(
                    "state-topic '{topic}' could not be read to its end within {:?}",
                    self.settings.timeout
                ));
            }
            match reader.consumer.poll(left.min(Duration::from_millis(200))) {
                Some(Ok(message)) => {
                    let partition = message.partition();
                    let offset = message.offset();
                    if let Some(key) = message.key() {
                        let key = String::from_utf8_lossy(key).into_owned();
                        match message.payload() {
                            Some(value) => {
                                let value = value.to_vec();
                                reader.latest.insert(key, value);
                            }
                            None => {
                                reader.latest.remove(&key);
                            }
                        }
                    }
                    reader.next.insert(partition, offset + 1);
                }
                Some(Err(e)) => gst::debug!(*CAT, "Reading state-topic '{topic}': {e}"),
                None => {}
            }
        }
        Ok(reader.latest.get(camera).cloned())
    }

    /// Hands in `part`'s state of `camera` as of `position`, with the holds of the frames
    /// it includes. Once every member's part for that position is in, the record is
    /// written, and the holds are released when the broker has it.
    pub fn stage(
        &self,
        camera: &str,
        position: &Position,
        part: &str,
        state: serde_json::Value,
        holds: Vec<RecordHold>,
    ) {
        let mut shared = self.shared.lock().unwrap();
        let shared = &mut *shared;
        shared.staged.retain(|camera, staged| {
            let stale = staged.since.elapsed() > PENDING_LIMIT;
            if stale {
                gst::warning!(
                    *CAT,
                    "Camera {camera:?}: state parts {:?} waited {PENDING_LIMIT:?} for the \
                     others; given up",
                    staged.parts.keys().collect::<Vec<_>>()
                );
            }
            !stale
        });
        let staged = shared
            .staged
            .entry(camera.to_string())
            .or_insert_with(|| Staged {
                position: position.clone(),
                parts: BTreeMap::new(),
                holds: Vec::new(),
                since: Instant::now(),
            });
        if staged.position != *position {
            // A newer save point before the older one was complete: the newer includes
            // everything the older held.
            staged.position = position.clone();
            staged.parts.clear();
            staged.since = Instant::now();
        }
        staged.parts.insert(part.to_string(), state);
        staged.holds.extend(holds);
        let complete = shared
            .members
            .keys()
            .all(|member| staged.parts.contains_key(member));
        if !complete {
            return;
        }
        let staged = shared.staged.remove(camera).unwrap();
        shared.restored.remove(camera);
        let record = StateRecord {
            schema: SCHEMA.to_string(),
            version: SCHEMA_VERSION,
            camera: camera.to_string(),
            position: staged.position,
            saved_at_ms: kafkavision::clock::unix_time_ms(),
            parts: staged.parts,
        };
        self.write(record, staged.holds);
    }

    fn write(&self, record: StateRecord, holds: Vec<RecordHold>) {
        let payload = record.to_json();
        let delivery = Box::new(SaveDelivery {
            camera: record.camera.clone(),
            holds,
            bytes: payload.len(),
        });
        let send = BaseRecord::with_opaque_to(&self.settings.topic, delivery)
            .key(record.camera.as_bytes())
            .payload(&payload);
        if let Err((error, record)) = self.producer.send(send) {
            self.stats.save_failures.fetch_add(1, Ordering::Relaxed);
            let SaveDelivery { camera, holds, .. } = *record.delivery_opaque;
            warn_save_failed(&camera, &error);
            self.producer
                .context()
                .failed_holds
                .lock()
                .unwrap()
                .entry(camera)
                .or_default()
                .extend(holds);
        }
    }

    /// True when the topic, read to its end now, holds a state of `camera` saved after
    /// `position` (by another worker that had the camera since).
    pub fn saved_after(&self, camera: &str, position: &Position) -> bool {
        match self.latest(camera) {
            Ok(Some(bytes)) => StateRecord::from_json(&bytes, camera)
                .is_ok_and(|saved| saved.position.is_after(position)),
            Ok(None) => false,
            Err(e) => {
                gst::warning!(*CAT, "Camera {camera:?}: {e}");
                false
            }
        }
    }

    /// Forgets what was restored for a camera this process no longer serves.
    pub fn forget(&self, camera: &str) {
        self.shared.lock().unwrap().restored.remove(camera);
    }
}

impl Drop for StateStore {
    fn drop(&mut self) {
        // The producer drops what it still queues: let states in flight land first.
        if let Err(e) = self.producer.flush(self.settings.timeout) {
            gst::warning!(*CAT, "Camera states still unsaved at stop: {e}");
        }
    }
}
