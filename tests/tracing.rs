//! The `tracing` feature with a real crash: a subscriber of the test's own (the library
//! installs none) must see the crash as a warning with the task's name, its worker's
//! pid and the error, inside the task's span, and the lost worker as it is replaced; a
//! panic in a map's batch as a warning inside the map's and the batch's spans.

#![cfg(feature = "tracing")]

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use procpool::{Pool, TaskError};
use procpool_worker::{Fault, WorkerPid};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::{Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

procpool::test_support!();

/// Fields as text, by name.
#[derive(Debug, Clone, Default)]
struct Fields(HashMap<&'static str, String>);

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name(), value.to_owned());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name(), format!("{value:?}"));
    }
}

/// An event as the subscriber saw it: its level, fields (the message among them) and
/// the spans it sat in, outermost first.
#[derive(Debug, Clone)]
struct Seen {
    level: Level,
    fields: Fields,
    spans: Vec<(&'static str, Fields)>,
}

impl Seen {
    fn field(&self, name: &str) -> Option<&str> {
        self.fields.0.get(name).map(String::as_str)
    }

    fn span(&self, name: &str) -> Option<&Fields> {
        self.spans.iter().find(|(n, _)| *n == name).map(|(_, f)| f)
    }
}

/// Keeps every event, with its spans' fields.
struct Collect(Arc<Mutex<Vec<Seen>>>);

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Collect {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(fields);
        }
    }

    fn on_event(&self, event: &tracing::Event<'_>, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let spans = ctx
            .event_scope(event)
            .map(|scope| {
                scope
                    .from_root()
                    .map(|span| {
                        let fields = span.extensions().get::<Fields>().cloned();
                        (span.name(), fields.unwrap_or_default())
                    })
                    .collect()
            })
            .unwrap_or_default();
        self.0.lock().unwrap().push(Seen {
            level: *event.metadata().level(),
            fields,
            spans,
        });
    }
}

/// The events seen by the test's subscriber, installed once for the whole process
/// (the slots' threads report to the global one).
fn seen() -> &'static Arc<Mutex<Vec<Seen>>> {
    static SEEN: OnceLock<Arc<Mutex<Vec<Seen>>>> = OnceLock::new();
    SEEN.get_or_init(|| {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let subscriber = tracing_subscriber::registry().with(Collect(seen.clone()));
        tracing::subscriber::set_global_default(subscriber).expect("no other subscriber");
        seen
    })
}

#[test]
fn a_crash_is_a_warning_with_the_task_its_worker_and_its_error() {
    let seen = seen();
    procpool_worker::link();
    let pool = Pool::builder()
        .workers(1)
        .core_dumps(false)
        .build()
        .unwrap();
    let pid = pool.submit(WorkerPid).unwrap().wait().unwrap();
    let crash = pool.submit(Fault::Abort).unwrap().wait().unwrap_err();
    assert_eq!(crash.signal(), Some(6));
    let inputs = vec![Fault::Ok(1), Fault::Panic("map boom".into()), Fault::Ok(3)];
    let outcomes: Vec<Result<u64, TaskError>> = pool.map(inputs).collect();
    assert!(outcomes[1].as_ref().is_err_and(TaskError::is_panic));
    pool.join();

    let seen = seen.lock().unwrap().clone();
    let task = "procpool_worker::Fault";
    let warning = seen
        .iter()
        .find(|e| e.level == Level::WARN && e.field("kind") == Some("signaled"))
        .unwrap_or_else(|| panic!("no warning for the crash in {seen:#?}"));
    assert_eq!(warning.field("task"), Some(task));
    assert_eq!(warning.field("pid"), Some(pid.to_string().as_str()));
    assert_eq!(warning.field("message"), Some(crash.to_string().as_str()));
    let span = warning
        .span("procpool.task")
        .expect("inside the task's span");
    assert_eq!(span.0.get("pid"), Some(&pid.to_string()));
    assert_eq!(span.0.get("task").map(String::as_str), Some(task));

    // The worker it cost: lost, and replaced.
    let lost = seen
        .iter()
        .find(|e| e.field("cause").is_some_and(|c| c.starts_with("lost")))
        .unwrap_or_else(|| panic!("no word of the lost worker in {seen:#?}"));
    assert_eq!(lost.level, Level::INFO);
    assert_eq!(lost.field("pid"), Some(pid.to_string().as_str()));

    // A panic in a map's batch: a warning in the batch's span, in the map's.
    let panic = seen
        .iter()
        .find(|e| e.level == Level::WARN && e.field("kind") == Some("panicked"))
        .unwrap_or_else(|| panic!("no warning for the panic in {seen:#?}"));
    assert!(panic.field("message").unwrap().contains("map boom"));
    assert_eq!(panic.field("task"), Some(task));
    let names: Vec<&str> = panic.spans.iter().map(|(name, _)| *name).collect();
    assert_eq!(names, ["procpool.map", "procpool.batch"]);
    // The task's own `Ok`s raise nothing.
    let warnings = seen.iter().filter(|e| e.level == Level::WARN).count();
    assert_eq!(warnings, 2, "{seen:#?}");
}
