// SPDX-License-Identifier: MIT OR Apache-2.0
//! Loading ONNX Runtime and a YOLO model: input size, output layout, labels.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use ort::environment::Environment;
use ort::ep::ExecutionProvider;
use ort::session::Session;
use ort::value::{TensorRef, ValueType};

use super::labels::COCO_NAMES;
use super::postprocess::Layout;

/// Where to find ONNX Runtime when the element is not told.
const SYSTEM_LIBRARIES: [&str; 2] = ["libonnxruntime.so", "libonnxruntime.so.1"];
/// Input size when the model's is symbolic and its metadata has no `imgsz`.
const DEFAULT_INPUT_SIZE: usize = 640;

/// ONNX Runtime is loaded once per process; later elements share it.
static RUNTIME: Mutex<Option<Arc<Environment>>> = Mutex::new(None);

/// Loads ONNX Runtime from `library`, else `ORT_DYLIB_PATH`, else the system library path.
pub fn runtime(library: Option<&str>) -> Result<Arc<Environment>, String> {
    let mut runtime = RUNTIME.lock().unwrap();
    if let Some(env) = runtime.as_ref() {
        return Ok(env.clone());
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
                    *runtime = Some(env.clone());
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

/// Execution providers the element can ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Provider {
    Cpu,
    Cuda,
    TensorRt,
}

pub struct SessionOptions<'a> {
    pub provider: Provider,
    /// 0: ONNX Runtime's default (one per core).
    pub threads: usize,
    pub spinning: bool,
    pub library: Option<&'a str>,
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
    /// Set when the requested provider could not be used (a warning for the user).
    pub provider_fallback: Option<String>,
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
        let builder_error = |e: ort::Error<ort::session::builder::SessionBuilder>| e.to_string();
        let mut builder = Session::builder(&env)
            .map_err(|e| e.to_string())?
            .with_intra_threads(options.threads)
            .map_err(builder_error)?
            .with_inter_threads(1)
            .map_err(builder_error)?
            .with_intra_op_spinning(options.spinning)
            .map_err(builder_error)?
            .with_inter_op_spinning(false)
            .map_err(builder_error)?;
        let provider_fallback = register_provider(&mut builder, options.provider);
        let session = builder.commit_from_file(path).map_err(|e| {
            format!(
                "'{}' could not be loaded as an ONNX model: {e}",
                path.display()
            )
        })?;

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
            provider_fallback,
        };
        // One run on a blank input: the output shape (often symbolic in the graph) is
        // known for sure, and the first-run cost is paid here, not on the first frame.
        let blank = vec![114.0f32 / 255.0; 3 * input_width * input_height];
        let shape = model.run(&blank, |shape, _| shape.to_vec())?;
        model.layout = Layout::detect(&shape, names.as_ref().map(Vec::len), end2end)?;
        model.output_shape = shape;
        let classes = match model.layout {
            Layout::V5 { classes } | Layout::V8 { classes } => Some(classes),
            Layout::EndToEnd => None,
        };
        model.labels = choose_labels(names, labels_file, classes)?;
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

    pub fn label(&self, class_id: usize) -> String {
        self.labels
            .get(class_id)
            .cloned()
            .unwrap_or_else(|| format!("class {class_id}"))
    }
}

/// Registers the provider; returns why it fell back to the CPU, if it did.
fn register_provider(
    builder: &mut ort::session::builder::SessionBuilder,
    provider: Provider,
) -> Option<String> {
    let result = match provider {
        Provider::Cpu => return None,
        Provider::Cuda => ort::ep::CUDA::default().register(builder),
        Provider::TensorRt => ort::ep::TensorRT::default().register(builder),
    };
    result.err().map(|e| {
        format!("execution provider {provider:?} is not available in this ONNX Runtime ({e}); using the CPU")
    })
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
