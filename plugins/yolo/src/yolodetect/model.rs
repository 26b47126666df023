// SPDX-License-Identifier: MIT OR Apache-2.0
//! Loading ONNX Runtime and a YOLO model: input size, output layout, labels.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use ort::environment::Environment;
use ort::ep::ExecutionProvider;
use ort::session::Session;
use ort::session::builder::SessionBuilder;
use ort::value::{TensorRef, ValueType};

use super::labels::COCO_NAMES;
use super::postprocess::Layout;

/// Where to find ONNX Runtime when the element is not told.
const SYSTEM_LIBRARIES: [&str; 2] = ["libonnxruntime.so", "libonnxruntime.so.1"];
/// Input size when the model's is symbolic and its metadata has no `imgsz`.
const DEFAULT_INPUT_SIZE: usize = 640;

/// ONNX Runtime is loaded once per process; later elements share it.
static RUNTIME: Mutex<Option<Runtime>> = Mutex::new(None);

struct Runtime {
    env: Arc<Environment>,
    /// The library file it was loaded from, when given as a path.
    library: Option<PathBuf>,
    /// The OpenVINO plugin library registered with it, once registered.
    openvino: Option<PathBuf>,
}

/// The OpenVINO execution provider's plugin library, as the PyPI wheel
/// `onnxruntime-ep-openvino` installs it next to the `onnxruntime` package.
const OPENVINO_PLUGIN: &str = "onnxruntime_ep_openvino/libonnxruntime_providers_openvino_plugin.so";
/// The name ONNX Runtime knows the OpenVINO execution provider by.
const OPENVINO_EP: &str = "OpenVINOExecutionProvider";
/// What `pip` installs for `execution-provider=openvino`.
pub const OPENVINO_WHEEL: &str = "onnxruntime-ep-openvino==1.8.1";

/// Loads ONNX Runtime from `library`, else `ORT_DYLIB_PATH`, else the system library path.
pub fn runtime(library: Option<&str>) -> Result<Arc<Environment>, String> {
    let mut runtime = RUNTIME.lock().unwrap();
    if let Some(loaded) = runtime.as_ref() {
        return Ok(loaded.env.clone());
    }
    let mut candidates: Vec<String> = Vec::new();
    candidates.extend(library.map(String::from));
    candidates.extend(
        std::env::var("ORT_DYLIB_PATH")
            .ok()
            .filter(|p| !p.is_empty()),
    );
    candidates.extend(SYSTEM_LIBRARIES.iter().map(|s| s.to_string()));
    let mut tried = Vec::new();
    for candidate in &candidates {
        match ort::init_from(candidate) {
            Ok(builder) => match builder.with_name("yolodetect").build() {
                Ok(env) => {
                    let env = Arc::new(env);
                    let path = Path::new(candidate);
                    *runtime = Some(Runtime {
                        env: env.clone(),
                        library: path.is_file().then(|| path.to_path_buf()),
                        openvino: None,
                    });
                    return Ok(env);
                }
                Err(err) => tried.push(format!("{candidate}: {err}")),
            },
            Err(err) => tried.push(format!("{candidate}: {err}")),
        }
    }
    Err(format!(
        "could not load ONNX Runtime ({}). Install it, e.g. `pip install onnxruntime==1.31.1`, \
         and set ort-library=<site-packages>/onnxruntime/capi/libonnxruntime.so.1.31.1 or \
         ORT_DYLIB_PATH, or put libonnxruntime.so on the library path",
        tried.join("; ")
    ))
}

/// Registers the OpenVINO plugin library with the loaded runtime (once per process):
/// `library`, else `ORT_OPENVINO_EP_PATH`, else the wheel's place beside `onnxruntime`.
fn register_openvino(library: Option<&str>) -> Result<(), String> {
    let mut runtime = RUNTIME.lock().unwrap();
    let loaded = runtime.as_mut().ok_or("ONNX Runtime is not loaded")?;
    let asked = library
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("ORT_OPENVINO_EP_PATH").map(PathBuf::from))
        .filter(|p| !p.as_os_str().is_empty());
    if let Some(path) = asked.as_ref().filter(|p| !p.is_file()) {
        return Err(not_found(path));
    }
    if let Some(registered) = &loaded.openvino {
        return match &asked {
            Some(path) if path != registered => Err(format!(
                "the OpenVINO plugin is already loaded from '{}' in this process; \
                 openvino-library '{}' cannot replace it",
                registered.display(),
                path.display()
            )),
            _ => Ok(()),
        };
    }
    // site-packages/onnxruntime/capi/libonnxruntime.so -> site-packages/<plugin>
    let beside_runtime = loaded.library.as_ref().and_then(|lib| {
        lib.parent()?
            .parent()?
            .parent()
            .map(|dir| dir.join(OPENVINO_PLUGIN))
    });
    let path = match asked.or(beside_runtime) {
        // Absolute: ONNX Runtime resolves a relative path against its own folder.
        Some(path) if path.is_file() => std::fs::canonicalize(&path).unwrap_or(path),
        Some(path) => return Err(not_found(&path)),
        None => {
            return Err(format!(
                "no OpenVINO execution provider plugin: install it with `pip install \
                 {OPENVINO_WHEEL}` and set openvino-library (or ORT_OPENVINO_EP_PATH) to its \
                 libonnxruntime_providers_openvino_plugin.so"
            ));
        }
    };
    loaded
        .env
        .register_ep_library(OPENVINO_EP, &path)
        .map_err(|e| {
            format!(
                "the OpenVINO plugin '{}' could not be loaded ({e}); it must match ONNX \
                 Runtime 1.31: `pip install {OPENVINO_WHEEL}`",
                path.display()
            )
        })?;
    loaded.openvino = Some(path);
    Ok(())
}

fn not_found(path: &Path) -> String {
    format!(
        "the OpenVINO execution provider plugin was not found at '{}'. Install it with \
         `pip install {OPENVINO_WHEEL}` (beside onnxruntime), or set openvino-library (or \
         ORT_OPENVINO_EP_PATH) to its libonnxruntime_providers_openvino_plugin.so",
        path.display()
    )
}

/// Execution providers the element can ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Provider {
    /// OpenVINO on the CPU where its plugin offers this machine's CPU (it offers Intel
    /// CPUs only), else the CPU provider; decided when the model loads.
    Auto {
        precision: Precision,
    },
    Cpu,
    Cuda,
    TensorRt,
    OpenVino {
        device: OpenVinoDevice,
        precision: Precision,
    },
}

impl Provider {
    /// The `execution-provider` nick of this provider.
    pub fn nick(self) -> &'static str {
        match self {
            Provider::Auto { .. } => "auto",
            Provider::Cpu => "cpu",
            Provider::Cuda => "cuda",
            Provider::TensorRt => "tensorrt",
            Provider::OpenVino { .. } => "openvino",
        }
    }
}

/// Where OpenVINO runs the model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenVinoDevice {
    Cpu,
    Gpu,
    Npu,
}

impl OpenVinoDevice {
    fn name(self) -> &'static str {
        match self {
            OpenVinoDevice::Cpu => "CPU",
            OpenVinoDevice::Gpu => "GPU",
            OpenVinoDevice::Npu => "NPU",
        }
    }

    fn hardware(self) -> ort::memory::DeviceType {
        match self {
            OpenVinoDevice::Cpu => ort::memory::DeviceType::CPU,
            OpenVinoDevice::Gpu => ort::memory::DeviceType::GPU,
            OpenVinoDevice::Npu => ort::memory::DeviceType::NPU,
        }
    }
}

/// OpenVINO's inference precision hint; `Auto` keeps the device's default (bf16 on CPUs
/// with AMX or AVX512-BF16, f32 elsewhere).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precision {
    Auto,
    F32,
    Bf16,
    F16,
}

pub struct SessionOptions<'a> {
    pub provider: Provider,
    /// 0: ONNX Runtime's default (one per core).
    pub threads: usize,
    pub spinning: bool,
    pub library: Option<&'a str>,
    /// The OpenVINO plugin library, for `Provider::OpenVino`.
    pub openvino_library: Option<&'a str>,
    /// Run on the CPU provider, with a warning, when the asked provider cannot be used.
    pub fallback_to_cpu: bool,
    /// Write ONNX Runtime's profile (each node's run and provider) to files with this
    /// prefix; read back with [`Model::node_providers`].
    pub profile: Option<&'a Path>,
}

/// A loaded model, ready to run.
pub struct Model {
    pub session: Session,
    pub input_name: String,
    pub input_width: usize,
    pub input_height: usize,
    pub layout: Layout,
    pub output_shape: Vec<i64>,
    pub labels: Vec<String>,
    /// The provider that runs the model: the asked one, `Auto`'s choice, or the CPU after
    /// a fallback (never `Auto`).
    pub provider: Provider,
    /// Why the model runs on `provider` when it is not simply the asked one.
    pub provider_note: Option<ProviderNote>,
}

/// Why a model runs where it runs, when that was decided at load.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProviderNote {
    /// `execution-provider=auto` chose, for this reason (for the log).
    Chosen(String),
    /// The asked provider could not be used and `fallback-to-cpu` is set (a warning).
    Fallback(String),
}

impl Model {
    pub fn load(
        path: &Path,
        labels_file: Option<&Path>,
        options: &SessionOptions<'_>,
    ) -> Result<Model, String> {
        if !path.is_file() {
            return Err(format!(
                "model-location '{}' is not a file; point it at a YOLO ONNX export (e.g. from \
                 `yolo export model=yolov8n.pt format=onnx`)",
                path.display()
            ));
        }
        let env = runtime(options.library)?;
        let (session, provider, provider_note) = open_session(path, &env, options)?;

        let input = session.inputs().first().ok_or("the model has no input")?;
        let input_name = input.name().to_string();
        let ValueType::Tensor { ty, shape, .. } = input.dtype() else {
            return Err(format!("model input '{input_name}' is not a tensor"));
        };
        if *ty != ort::value::TensorElementType::Float32 {
            return Err(format!(
                "model input '{input_name}' is {ty:?}; yolodetect needs a float32 input (export \
                 without half=True)"
            ));
        }
        if shape.len() != 4 || (shape[1] != 3 && shape[1] != -1) {
            return Err(format!(
                "model input '{input_name}' has shape {:?}; a YOLO model takes [1, 3, H, W]",
                &shape[..]
            ));
        }
        let metadata = session.metadata().map_err(|e| e.to_string())?;
        let custom = |key: &str| metadata.custom(key);
        let imgsz = custom("imgsz").and_then(|s| parse_imgsz(&s));
        let (input_height, input_width) = match (shape[2], shape[3]) {
            (h, w) if h > 0 && w > 0 => (h as usize, w as usize),
            _ => imgsz.unwrap_or((DEFAULT_INPUT_SIZE, DEFAULT_INPUT_SIZE)),
        };
        let names = custom("names")
            .map(|s| parse_names(&s))
            .filter(|n| !n.is_empty());
        let end2end = custom("end2end").is_some_and(|s| s.eq_ignore_ascii_case("true"));
        drop(metadata);

        let mut model = Model {
            session,
            input_name,
            input_width,
            input_height,
            layout: Layout::EndToEnd,
            output_shape: Vec::new(),
            labels: Vec::new(),
            provider,
            provider_note,
        };
        // One run on a blank input: the output shape (often symbolic in the graph) is
        // known for sure, and the first-run cost is paid here, not on the first frame.
        let blank = vec![114.0f32 / 255.0; 3 * input_width * input_height];
        let shape = model.run(&blank, |shape, _| shape.to_vec())?;
        model.layout = Layout::detect(&shape, names.as_ref().map(Vec::len), end2end)?;
        model.output_shape = shape;
        model.labels = choose_labels(names, labels_file, model.layout.classes())?;
        Ok(model)
    }

    /// Runs the model on a prepared input; returns the first output's shape and data.
    /// Runs the model on `input` and hands its first output (shape, data) to `decode`,
    /// borrowed from ONNX Runtime: no copy of the output tensor per frame.
    pub fn run<R>(
        &mut self,
        input: &[f32],
        decode: impl FnOnce(&[i64], &[f32]) -> R,
    ) -> Result<R, String> {
        let shape = [1usize, 3, self.input_height, self.input_width];
        let tensor = TensorRef::from_array_view((shape, input)).map_err(|e| e.to_string())?;
        let outputs = self
            .session
            .run(ort::inputs![self.input_name.as_str() => tensor])
            .map_err(|e| format!("inference failed: {e}"))?;
        let (shape, data) = outputs[0]
            .try_extract_tensor::<f32>()
            .map_err(|e| format!("the model's first output is not a float32 tensor: {e}"))?;
        Ok(decode(shape, data))
    }

    /// Ends profiling (see [`SessionOptions::profile`]) and counts the node runs each
    /// execution provider did: which provider really ran the model.
    pub fn node_providers(&mut self) -> Result<std::collections::BTreeMap<String, usize>, String> {
        let file = self.session.end_profiling().map_err(|e| e.to_string())?;
        let text = std::fs::read_to_string(&file).map_err(|e| format!("{file}: {e}"))?;
        let _ = std::fs::remove_file(&file);
        let mut counts = std::collections::BTreeMap::new();
        for (at, _) in text.match_indices("\"provider\"") {
            let rest = text[at + "\"provider\"".len()..].trim_start_matches([':', ' ', '"']);
            if let Some(end) = rest.find('"') {
                *counts.entry(rest[..end].to_string()).or_insert(0) += 1;
            }
        }
        Ok(counts)
    }

    pub fn label(&self, class_id: usize) -> String {
        self.labels
            .get(class_id)
            .cloned()
            .unwrap_or_else(|| format!("class {class_id}"))
    }
}

/// A session of the model on the asked provider. `Auto` tries OpenVINO where its plugin
/// offers this CPU and takes the CPU provider otherwise, or when OpenVINO cannot take the
/// model; another provider that fails is an error, or the CPU with `fallback_to_cpu`.
fn open_session(
    path: &Path,
    env: &Environment,
    options: &SessionOptions<'_>,
) -> Result<(Session, Provider, Option<ProviderNote>), String> {
    let asked = match options.provider {
        Provider::Auto { precision } => {
            match offered_openvino_devices(env, options.openvino_library, OpenVinoDevice::Cpu) {
                Ok(_) => Provider::OpenVino {
                    device: OpenVinoDevice::Cpu,
                    precision,
                },
                Err(why) => {
                    let session = session_on(path, env, options, Provider::Cpu)?;
                    let note = format!("the CPU provider, because {why}");
                    return Ok((session, Provider::Cpu, Some(ProviderNote::Chosen(note))));
                }
            }
        }
        asked => asked,
    };
    let auto = matches!(options.provider, Provider::Auto { .. });
    match session_on(path, env, options, asked) {
        Ok(session) => {
            let note = auto.then(|| {
                ProviderNote::Chosen("OpenVINO, because its plugin offers this CPU".into())
            });
            Ok((session, asked, note))
        }
        Err(why) if asked == Provider::Cpu => Err(why),
        Err(why) if auto => {
            let session = session_on(path, env, options, Provider::Cpu)?;
            let note = format!("the CPU provider, because OpenVINO failed: {why}");
            Ok((session, Provider::Cpu, Some(ProviderNote::Chosen(note))))
        }
        Err(why) if options.fallback_to_cpu => {
            let session = session_on(path, env, options, Provider::Cpu)?;
            let note = format!("{why}; using the CPU (fallback-to-cpu=true)");
            Ok((session, Provider::Cpu, Some(ProviderNote::Fallback(note))))
        }
        Err(why) => Err(format!(
            "{why} (set fallback-to-cpu=true to run on the CPU instead)"
        )),
    }
}

/// A session of the model on `provider` (not `Auto`) with the options' threads and profile.
fn session_on(
    path: &Path,
    env: &Environment,
    options: &SessionOptions<'_>,
    provider: Provider,
) -> Result<Session, String> {
    let builder_error = |e: ort::Error<SessionBuilder>| e.to_string();
    let builder = Session::builder(env)
        .map_err(|e| e.to_string())?
        .with_intra_threads(options.threads)
        .map_err(builder_error)?
        .with_inter_threads(1)
        .map_err(builder_error)?
        .with_intra_op_spinning(options.spinning)
        .map_err(builder_error)?
        .with_inter_op_spinning(false)
        .map_err(builder_error)?;
    let mut builder = with_provider(builder, env, provider, options)?;
    if let Some(prefix) = options.profile {
        builder = builder.with_profiling(prefix).map_err(builder_error)?;
    }
    builder.commit_from_file(path).map_err(|e| match provider {
        Provider::Cpu => format!(
            "'{}' could not be loaded as an ONNX model: {e}",
            path.display()
        ),
        _ => format!(
            "execution provider {} could not load '{}': {e}",
            provider.nick(),
            path.display()
        ),
    })
}

/// Adds `provider` to the session.
fn with_provider(
    mut builder: SessionBuilder,
    env: &Environment,
    provider: Provider,
    options: &SessionOptions<'_>,
) -> Result<SessionBuilder, String> {
    let unavailable = |e: &dyn std::fmt::Display| {
        format!("execution provider {provider:?} is not available in this ONNX Runtime ({e})")
    };
    match provider {
        Provider::Cpu | Provider::Auto { .. } => pin_cpu(builder, env),
        Provider::Cuda => match ort::ep::CUDA::default().register(&mut builder) {
            Ok(()) => Ok(builder),
            Err(e) => Err(unavailable(&e)),
        },
        Provider::TensorRt => match ort::ep::TensorRT::default().register(&mut builder) {
            Ok(()) => Ok(builder),
            Err(e) => Err(unavailable(&e)),
        },
        Provider::OpenVino { device, precision } => {
            let devices = openvino_devices(env, options.openvino_library, device)?;
            if devices.is_empty() {
                return Err(format!(
                    "{}; set openvino-device to another device, or execution-provider=auto \
                     to run on the CPU provider where OpenVINO has no device",
                    no_openvino_device(device)
                ));
            }
            let config = openvino_config(device, precision, options.threads);
            let settings = [(format!("{OPENVINO_EP}.load_config"), config)];
            builder
                .with_devices(devices, Some(&settings))
                .map_err(|e| format!("OpenVINO could not take the model ({e})"))
        }
    }
}

/// Whether the OpenVINO plugin offers a `device` on this machine (it offers Intel devices
/// only), loading ONNX Runtime and registering the plugin as the element would; the error
/// says why not.
pub fn openvino_offers(
    library: Option<&str>,
    openvino_library: Option<&str>,
    device: OpenVinoDevice,
) -> Result<(), String> {
    let env = runtime(library)?;
    offered_openvino_devices(&env, openvino_library, device).map(drop)
}

/// [`openvino_devices`], where none is an error saying so.
fn offered_openvino_devices<'e>(
    env: &'e Environment,
    library: Option<&str>,
    device: OpenVinoDevice,
) -> Result<Vec<ort::device::Device<'e>>, String> {
    let devices = openvino_devices(env, library, device)?;
    if devices.is_empty() {
        return Err(no_openvino_device(device));
    }
    Ok(devices)
}

fn no_openvino_device(device: OpenVinoDevice) -> String {
    format!(
        "OpenVINO's plugin offers no {} device on this machine (it offers Intel devices only)",
        device.name()
    )
}

/// The OpenVINO plugin's devices of the `device` kind (none where it offers no such
/// device), registering the plugin first; an error says why the plugin cannot be used.
fn openvino_devices<'e>(
    env: &'e Environment,
    library: Option<&str>,
    device: OpenVinoDevice,
) -> Result<Vec<ort::device::Device<'e>>, String> {
    register_openvino(library)?;
    let devices: Vec<_> = env
        .devices()
        .filter(|d| {
            d.ep().ok() == Some(OPENVINO_EP) && d.hardware_device().ty() == device.hardware()
        })
        .collect();
    Ok(devices)
}

/// Once the OpenVINO plugin is registered, ONNX Runtime's automatic device choice picks
/// it (it is a CPU device) for sessions that name no provider: pin the CPU provider then.
fn pin_cpu(builder: SessionBuilder, env: &Environment) -> Result<SessionBuilder, String> {
    let openvino_registered = RUNTIME
        .lock()
        .unwrap()
        .as_ref()
        .is_some_and(|r| r.openvino.is_some());
    if !openvino_registered {
        return Ok(builder);
    }
    let cpu = env
        .devices()
        .filter(|d| d.ep().ok() == Some("CPUExecutionProvider"));
    builder.with_devices(cpu, None).map_err(|e| e.to_string())
}

/// OpenVINO's per-device properties, as the `load_config` JSON the plugin takes.
fn openvino_config(device: OpenVinoDevice, precision: Precision, threads: usize) -> String {
    let mut properties = vec![r#""PERFORMANCE_HINT": "LATENCY""#.to_string()];
    let hint = match precision {
        Precision::Auto => None,
        Precision::F32 => Some("f32"),
        Precision::Bf16 => Some("bf16"),
        Precision::F16 => Some("f16"),
    };
    if let Some(hint) = hint {
        properties.push(format!(r#""INFERENCE_PRECISION_HINT": "{hint}""#));
    }
    if device == OpenVinoDevice::Cpu && threads > 0 {
        properties.push(format!(r#""INFERENCE_NUM_THREADS": {threads}"#));
    }
    format!(r#"{{"{}": {{{}}}}}"#, device.name(), properties.join(", "))
}

/// Labels: the model's `names`, else `labels-file` (one per line), else COCO for 80
/// classes, else none (numbers are shown).
fn choose_labels(
    names: Option<Vec<String>>,
    labels_file: Option<&Path>,
    classes: Option<usize>,
) -> Result<Vec<String>, String> {
    if let Some(names) = names {
        return Ok(names);
    }
    if let Some(path) = labels_file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("labels-file '{}' cannot be read: {e}", path.display()))?;
        return Ok(text
            .lines()
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty())
            .collect());
    }
    if classes.is_none_or(|n| n == COCO_NAMES.len()) {
        return Ok(COCO_NAMES.iter().map(|s| s.to_string()).collect());
    }
    Ok(Vec::new())
}

/// Parses Ultralytics' `names` metadata, a Python dict literal: `{0: 'person', 1: "car"}`.
pub fn parse_names(text: &str) -> Vec<String> {
    let mut names: Vec<(usize, String)> = Vec::new();
    let mut rest = text.trim().trim_start_matches('{');
    loop {
        rest = rest.trim_start_matches([',', ' ', '\n']);
        let Some(colon) = rest.find(':') else { break };
        let Ok(index) = rest[..colon].trim().parse::<usize>() else {
            break;
        };
        let value = rest[colon + 1..].trim_start();
        let Some(quote) = value.chars().next().filter(|c| *c == '\'' || *c == '"') else {
            break;
        };
        let Some(end) = value[1..].find(quote) else {
            break;
        };
        names.push((index, value[1..1 + end].to_string()));
        rest = &value[end + 2..];
    }
    names.sort_by_key(|(i, _)| *i);
    let count = names.last().map_or(0, |(i, _)| i + 1);
    let mut labels: Vec<String> = (0..count).map(|i| format!("class {i}")).collect();
    for (i, name) in names {
        labels[i] = name;
    }
    labels
}

/// Parses `imgsz` metadata, `[640, 640]` (height, width) or `640`.
fn parse_imgsz(text: &str) -> Option<(usize, usize)> {
    let numbers: Vec<usize> = text
        .trim_matches(|c| c == '[' || c == ']' || c == '(' || c == ')')
        .split(',')
        .filter_map(|n| n.trim().parse().ok())
        .collect();
    match numbers[..] {
        [size] => Some((size, size)),
        [h, w] => Some((h, w)),
        _ => None,
    }
}

pub fn labels_path(text: Option<&str>) -> Option<PathBuf> {
    text.filter(|t| !t.is_empty()).map(PathBuf::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_metadata_is_parsed_from_python_dict_literals() {
        assert_eq!(
            parse_names("{0: 'person', 1: \"traffic light\", 2: 'x'}"),
            vec!["person", "traffic light", "x"]
        );
        assert_eq!(parse_names("{1: 'b', 0: 'a'}"), vec!["a", "b"]);
        assert_eq!(parse_names("{0: 'a', 2: 'c'}"), vec!["a", "class 1", "c"]);
        assert!(parse_names("garbage").is_empty());
    }

    #[test]
    fn imgsz_metadata_gives_height_and_width() {
        assert_eq!(parse_imgsz("[640, 480]"), Some((640, 480)));
        assert_eq!(parse_imgsz("320"), Some((320, 320)));
        assert_eq!(parse_imgsz("[a]"), None);
    }

    #[test]
    fn labels_come_from_metadata_then_file_then_coco() {
        let names = vec!["ball".to_string()];
        assert_eq!(
            choose_labels(Some(names.clone()), None, Some(1)).unwrap(),
            names
        );
        assert_eq!(
            choose_labels(None, None, Some(80)).unwrap()[32],
            "sports ball"
        );
        assert!(choose_labels(None, None, Some(3)).unwrap().is_empty());
        let err = choose_labels(None, Some(Path::new("/no/such/labels.txt")), Some(3)).unwrap_err();
        assert!(err.contains("labels-file '/no/such/labels.txt'"), "{err}");
    }
}
