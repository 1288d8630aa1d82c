//! The inference service: a worker thread that loads the model and runs
//! one job at a time, a bounded admission count in front of it, and the
//! state that `/api/health` and systemd's `STATUS=` report.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{mpsc as std_mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tracing::{error, info, warn};

use super::cpu;
use super::engine::{Engine, ModelInfo};
use super::generate::{self, Event, Job};
use super::import::IMPORT_DEVICE;
use super::scripted::ScriptedEngine;
use crate::config::{Config, ModelsConfig};
use crate::detect::Detection;
use crate::rootfs::RootFs;

/// Events a job may send before its client reads them; more wait.
const EVENT_BUFFER: usize = 64;

/// How often the worker looks again for a model that is missing or
/// failed its checks.
#[cfg_attr(not(feature = "llama"), allow(dead_code))]
const MODEL_RETRY_INTERVAL: Duration = Duration::from_secs(5);

/// Engine that serves the API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EngineChoice {
    /// llama.cpp with the model from `models`.
    Llama,
    /// The token stream of a `scripted-backend-v1` file.
    Scripted(PathBuf),
}

impl std::str::FromStr for EngineChoice {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text == "llama" {
            return Ok(EngineChoice::Llama);
        }
        match text.strip_prefix("scripted:") {
            Some(path) if !path.is_empty() => Ok(EngineChoice::Scripted(PathBuf::from(path))),
            _ => Err(format!(
                "invalid engine {text:?}: use llama, or scripted:FILE with a scripted-backend-v1 JSON file"
            )),
        }
    }
}

/// Everything the worker needs to load the engine.
#[derive(Clone, Debug)]
pub struct EngineSettings {
    pub choice: EngineChoice,
    pub models: ModelsConfig,
    pub context_tokens: u32,
    pub threads: u32,
    /// Layers to offload to a GPU; 0 when the GPU gate is closed.
    pub gpu_layers: u32,
    /// Disk whose models are imported while the models folder is empty.
    pub import_device: PathBuf,
}

impl EngineSettings {
    /// Derives the settings from the configuration. On bare metal the GPU
    /// may be used. In a VM it needs `vm.gpu_passthrough`, because the host
    /// can read a passed-through GPU's memory.
    pub fn from_config(
        choice: EngineChoice,
        config: &Config,
        detection: &Detection,
        fs: &RootFs,
    ) -> EngineSettings {
        let gpu_allowed = !detection.is_vm() || config.vm.gpu_passthrough;
        let gpu_layers = if gpu_allowed {
            config.inference.gpu_layers.unwrap_or(u32::MAX)
        } else {
            0
        };
        EngineSettings {
            choice,
            models: config.models.clone(),
            context_tokens: config.inference.context_tokens,
            threads: config
                .inference
                .threads
                .unwrap_or_else(|| cpu::default_threads(fs)),
            gpu_layers,
            import_device: PathBuf::from(IMPORT_DEVICE),
        }
    }
}

/// State of the service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServiceState {
    /// The model is being found, checked or loaded, as the text describes.
    Loading(String),
    /// The model is loaded and jobs run.
    Ready(Arc<ModelInfo>),
    /// No model can be served. The text gives the reason and the fix.
    Unavailable(String),
}

impl ServiceState {
    /// Returns a one-line description for logs and systemd's `STATUS=`.
    pub fn describe(&self) -> String {
        match self {
            ServiceState::Loading(text) => text.clone(),
            ServiceState::Ready(model) => format!("Serving model {}", model.id),
            ServiceState::Unavailable(text) => format!("No model: {text}"),
        }
    }
}

/// Reason a job was not admitted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    #[error("the model is not ready: {0}")]
    NotReady(String),

    #[error("{pending} requests are already running or waiting, the maximum; retry later")]
    QueueFull { pending: u32 },
}

/// Handle that the API uses to submit jobs. The worker thread ends, and unmaps the model,
/// once every clone is dropped.
#[derive(Clone)]
pub struct InferenceService {
    jobs: std_mpsc::Sender<Admitted>,
    pending: Arc<AtomicU32>,
    /// Jobs allowed at once: the running one and the waiting ones.
    capacity: u32,
    state: watch::Receiver<ServiceState>,
}

/// A job that occupies one place of the admission count until it is dropped.
struct Admitted {
    job: Job,
    _place: Place,
}

struct Place(Arc<AtomicU32>);

impl Drop for Place {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl InferenceService {
    /// Starts the worker thread, which loads the engine and then runs jobs.
    /// `queue_size` jobs may wait while one runs.
    pub fn start(settings: EngineSettings, queue_size: u32) -> InferenceService {
        let (state_sender, state) = watch::channel(ServiceState::Loading(
            "Starting the inference engine".to_owned(),
        ));
        let (jobs, job_receiver) = std_mpsc::channel::<Admitted>();
        let spawned = thread::Builder::new()
            .name("inference".to_owned())
            .spawn(move || worker(settings, state_sender, job_receiver));
        if let Err(err) = spawned {
            error!(error = %err, "failed to start the inference thread");
        }
        InferenceService {
            jobs,
            pending: Arc::new(AtomicU32::new(0)),
            capacity: queue_size.saturating_add(1),
            state,
        }
    }

    /// Returns the current state.
    pub fn state(&self) -> ServiceState {
        self.state.borrow().clone()
    }

    /// Returns a receiver that gets every state change.
    pub fn subscribe(&self) -> watch::Receiver<ServiceState> {
        self.state.clone()
    }

    /// Admits a job built by `build` around the event channel, and returns
    /// the channel's receiving end. Dropping the receiver cancels the job.
    pub fn submit(
        &self,
        build: impl FnOnce(mpsc::Sender<Event>) -> Job,
    ) -> Result<mpsc::Receiver<Event>, SubmitError> {
        if let ServiceState::Loading(text) | ServiceState::Unavailable(text) = self.state() {
            return Err(SubmitError::NotReady(text));
        }
        let admitted = self
            .pending
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |pending| {
                (pending < self.capacity).then_some(pending + 1)
            });
        if let Err(pending) = admitted {
            return Err(SubmitError::QueueFull { pending });
        }
        let place = Place(Arc::clone(&self.pending));

        let (events, receiver) = mpsc::channel(EVENT_BUFFER);
        let job = build(events);
        self.jobs
            .send(Admitted { job, _place: place })
            .map_err(|_| SubmitError::NotReady("the inference thread has stopped".to_owned()))?;
        Ok(receiver)
    }
}

fn worker(
    settings: EngineSettings,
    state: watch::Sender<ServiceState>,
    jobs: std_mpsc::Receiver<Admitted>,
) {
    let started = Instant::now();
    let Some(mut engine) = load_engine(&settings, &state) else {
        return;
    };
    let model = Arc::new(engine.info().clone());
    // From the search for a model to a warmed-up engine, checks included.
    info!(
        model = %model.id,
        engine = ?model.engine,
        path = %model.path.display(),
        context_tokens = model.context_tokens,
        load_ms = started.elapsed().as_millis(),
        "model ready"
    );
    state.send_replace(ServiceState::Ready(model));

    while let Ok(admitted) = jobs.recv() {
        generate::run(engine.as_mut(), admitted.job);
    }
}

/// Loads the engine, reporting progress through `state`. Returns `None`
/// when no engine can ever load in this process.
fn load_engine(
    settings: &EngineSettings,
    state: &watch::Sender<ServiceState>,
) -> Option<Box<dyn Engine>> {
    match &settings.choice {
        EngineChoice::Scripted(path) => {
            state.send_replace(ServiceState::Loading(format!(
                "Loading the scripted token stream {}",
                path.display()
            )));
            match ScriptedEngine::load(path, settings.context_tokens) {
                Ok(engine) => {
                    warn!(path = %path.display(), "serving a scripted token stream instead of a model");
                    Some(Box::new(engine))
                }
                Err(err) => {
                    error!(error = %err, "failed to load the scripted engine");
                    state.send_replace(ServiceState::Unavailable(err.to_string()));
                    None
                }
            }
        }
        EngineChoice::Llama => load_llama(settings, state),
    }
}

#[cfg(feature = "llama")]
fn load_llama(
    settings: &EngineSettings,
    state: &watch::Sender<ServiceState>,
) -> Option<Box<dyn Engine>> {
    use super::llama::LlamaEngine;
    use super::model_file;

    import_models(settings, state);
    // The message of the last failure, so a retry that fails the same way
    // is not logged again.
    let mut last_failure = String::new();
    loop {
        state.send_replace(ServiceState::Loading(format!(
            "Looking for a model in {}",
            settings.models.dir.display()
        )));
        let attempt = model_file::find_default(&settings.models)
            .map_err(|err| err.to_string())
            .and_then(|path| {
                state.send_replace(ServiceState::Loading(format!(
                    "Checking the model file {}",
                    path.display()
                )));
                model_file::check(&path, &settings.models).map_err(|err| err.to_string())
            })
            .and_then(|checked| {
                state.send_replace(ServiceState::Loading(format!(
                    "Loading the model {}",
                    checked.path.display()
                )));
                LlamaEngine::load(&checked, settings).map_err(|err| err.to_string())
            });
        match attempt {
            Ok(engine) => return Some(Box::new(engine)),
            Err(message) => {
                if message != last_failure {
                    error!(error = %message, retry_seconds = MODEL_RETRY_INTERVAL.as_secs(), "no model loaded");
                    last_failure.clone_from(&message);
                }
                state.send_replace(ServiceState::Unavailable(message));
                thread::sleep(MODEL_RETRY_INTERVAL);
            }
        }
    }
}

/// Imports models from the import disk, once, before the first search.
#[cfg(feature = "llama")]
fn import_models(settings: &EngineSettings, state: &watch::Sender<ServiceState>) {
    use super::import::{self, ImportOutcome};

    state.send_replace(ServiceState::Loading(format!(
        "Importing models from {}",
        settings.import_device.display()
    )));
    match import::import_models(&settings.import_device, &settings.models) {
        Ok(ImportOutcome::Imported(paths)) => info!(count = paths.len(), "models imported"),
        Ok(ImportOutcome::ModelsPresent) => info!(
            device = %settings.import_device.display(),
            "the models folder already has a model, so the import disk is not read"
        ),
        Ok(ImportOutcome::NoDevice) => {}
        Err(err) => error!(error = %err, "model import failed"),
    }
}

#[cfg(not(feature = "llama"))]
fn load_llama(
    _settings: &EngineSettings,
    state: &watch::Sender<ServiceState>,
) -> Option<Box<dyn Engine>> {
    let message = "this appliance-agent was built without llama.cpp (the `llama` cargo feature), \
                   so it cannot load models; use the appliance-agent package of the root file system"
        .to_owned();
    error!(error = %message, "no inference engine");
    state.send_replace(ServiceState::Unavailable(message));
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::Vm;
    use crate::rootfs::FsOverrides;

    fn detection(vm: Vm) -> Detection {
        let empty = tempfile::tempdir().expect("temporary directory");
        let fs = RootFs::new(empty.path().to_owned(), FsOverrides::default());
        let cpuid = crate::detect::CpuidInfo {
            arch: "x86_64".to_owned(),
            hypervisor_bit: false,
            leaf_40000000_signature: None,
            leaf_40000100_signature: None,
        };
        let mut detection = crate::detect::run(&fs, &cpuid);
        detection.vm = vm;
        detection
    }

    fn gpu_layers(vm: Vm, passthrough: bool, configured: Option<u32>) -> u32 {
        let mut config = Config::default();
        config.vm.gpu_passthrough = passthrough;
        config.inference.gpu_layers = configured;
        config.inference.threads = Some(2);
        EngineSettings::from_config(
            EngineChoice::Llama,
            &config,
            &detection(vm),
            &RootFs::host(),
        )
        .gpu_layers
    }

    #[test]
    fn gpu_gate() {
        assert_eq!(gpu_layers(Vm::None, false, None), u32::MAX);
        assert_eq!(gpu_layers(Vm::None, false, Some(12)), 12);
        assert_eq!(gpu_layers(Vm::Kvm, false, Some(12)), 0);
        assert_eq!(gpu_layers(Vm::Kvm, true, Some(12)), 12);
        assert_eq!(gpu_layers(Vm::Kvm, true, None), u32::MAX);
    }

    #[test]
    fn engine_choice_parses() {
        assert_eq!("llama".parse(), Ok(EngineChoice::Llama));
        assert_eq!(
            "scripted:/tmp/a.json".parse(),
            Ok(EngineChoice::Scripted(PathBuf::from("/tmp/a.json")))
        );
        for text in ["", "scripted:", "gpt", "scripted"] {
            let err = text.parse::<EngineChoice>().expect_err(text);
            assert!(err.contains("scripted:FILE"), "{err}");
        }
    }
}
