// SPDX-License-Identifier: MIT OR Apache-2.0
//! camera-sim: an RTSP server of our own serving H.264 test video of N simulated cameras
//! at rtsp://127.0.0.1:PORT/cam1 … /camN.
//!
//! Every camera is `videotestsrc pattern=ball motion=wavy animation-mode=frames` (a bright
//! ball on black, the picture a pure function of the frame count), rendered small and
//! scaled up so the ball is big enough for the demo detector (`models/blob-yolov8.onnx`
//! wants bright blobs of >= ~48 px at its 320 px input: videotestsrc's ball is always 40
//! source pixels wide), encoded with x264 (one keyframe a second) and payloaded as RTP.
//! Each mount has one shared media: several clients see the same camera. Cameras differ in
//! the ball's size, colour and path (mirrored/rotated). The `sweep`/`hsweep` motions are
//! not used: they draw full-width white lines through the ball, which the blob detector
//! then reports as one frame-wide box.
//!
//! With `--scene crossing` every camera shows the scripted scene of
//! `gst_kafka_vision_examples::scene` instead: white squares crossing a vertical line at
//! known times, both ways, two at once, one that touches the line and turns back, one the
//! camera misses for three frames (the line-counting demo and its tests). Camera K starts
//! K-1 seconds into the script, so cameras differ.
//!
//! Prints `camera-sim: rtsp://127.0.0.1:PORT/camK` per camera and `camera-sim: ready` once
//! listening; stops cleanly (closing the client connections) on SIGINT/SIGTERM.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use gst::glib;
use gst::prelude::*;
use gst_rtsp_server::prelude::*;
use gst_rtsp_server::{RTSPFilterResult, RTSPMediaFactory, RTSPServer};

const USAGE: &str = "\
camera-sim: RTSP server with simulated H.264 cameras (a bright moving ball on black)

usage: camera-sim [--cameras N] [--port P] [--fps F] [--width W] [--height H] [--scene balls|crossing]
                  [--user NAME]

  --cameras N   number of cameras, served at /cam1 … /camN (default 2)
  --port P      TCP port of the RTSP server; 0 picks a free port (default 8554)
  --fps F       frames per second; one keyframe a second (default 10)
  --width W     frame width (default 640)
  --height H    frame height (default 480)
  --scene S     balls: a bright ball bouncing around (default); crossing: the scripted
                line-crossing scene (squares crossing x = 0.5 at known times)
  --user NAME   require RTSP basic authentication as NAME, with the password in the
                environment variable CAMERA_SIM_PASSWORD (as real cameras do)

Prints one line `camera-sim: rtsp://127.0.0.1:PORT/camK` per camera, then
`camera-sim: ready`. Stops on SIGINT/SIGTERM.";

/// The role `--user` gets: it may open and play every camera.
const CAMERA_ROLE: &str = "viewer";

/// videotestsrc draws the ball with a fixed radius of 20 source pixels (motion=wavy).
const BALL_DIAMETER: f64 = 40.0;

/// How the cameras differ: the ball's diameter as a fraction of the frame's longer side
/// (0.1875 at 640x480 = 120 px, i.e. 60 px at the detector's 320 px input), its colour
/// (ARGB, always bright: the detector wants mean(R, G, B) > 0.5) and a flip or rotation of
/// the picture, so that every camera's ball takes another path.
const CAMERA_STYLES: [(f64, u32, &str); 4] = [
    (0.25, 0xffffffff, "identity"),
    (0.1875, 0xffffff80, "horiz"),
    (0.3, 0xff80ffff, "vert"),
    (0.22, 0xffffc0ff, "180"),
];

/// The launch line of camera `index` (0-based).
fn camera_launch(index: usize, width: u32, height: u32, fps: u32) -> String {
    let (ball_fraction, color, direction) = CAMERA_STYLES[index % CAMERA_STYLES.len()];
    // Render at a size where the 40 px ball is `ball_fraction` of the longer side, then
    // scale up to the output size. Even sizes keep I420 happy.
    let longer = width.max(height) as f64;
    let scale = (BALL_DIAMETER / (ball_fraction * longer)).min(1.0);
    let even = |v: f64| ((v / 2.0).round() as u32 * 2).max(2);
    let (src_w, src_h) = (even(width as f64 * scale), even(height as f64 * scale));
    format!(
        "( videotestsrc is-live=true pattern=ball motion=wavy animation-mode=frames \
             background-color=0xff000000 foreground-color={color:#010x} ! \
           video/x-raw,format=I420,width={src_w},height={src_h},framerate={fps}/1 ! \
           videoflip video-direction={direction} ! videoscale ! \
           video/x-raw,width={width},height={height},pixel-aspect-ratio=1/1 ! \
           x264enc tune=zerolatency speed-preset=ultrafast key-int-max={fps} bframes=0 ! \
           video/x-h264,profile=constrained-baseline ! \
           rtph264pay name=pay0 pt=96 config-interval=1 )"
    )
}

/// The scripted scene's pipeline: frames rendered by the program into `appsrc name=scene`.
fn scene_launch(width: u32, height: u32, fps: u32) -> String {
    format!(
        "( appsrc name=scene is-live=true do-timestamp=true format=time \
             caps=video/x-raw,format=RGB,width={width},height={height},framerate={fps}/1 ! \
           videoconvert ! video/x-raw,format=I420 ! \
           x264enc tune=zerolatency speed-preset=ultrafast key-int-max={fps} bframes=0 ! \
           video/x-h264,profile=constrained-baseline ! \
           rtph264pay name=pay0 pt=96 config-interval=1 )"
    )
}

/// Feeds the scene's frames into a new media's appsrc, paced at `fps`, camera `index`
/// starting `index` seconds into the script.
fn play_scene(media: &gst_rtsp_server::RTSPMedia, index: usize, width: u32, height: u32, fps: u32) {
    let Some(src) = media
        .element()
        .downcast::<gst::Bin>()
        .ok()
        .and_then(|bin| bin.by_name("scene"))
        .and_then(|e| e.downcast::<gst_app::AppSrc>().ok())
    else {
        eprintln!("camera-sim: the scene's media has no appsrc");
        return;
    };
    let frame_time = Duration::from_secs(1) / fps;
    let first = index as u32 * fps;
    let mut next = 0u32;
    let mut started: Option<Instant> = None;
    src.set_callbacks(
        gst_app::AppSrcCallbacks::builder()
            .need_data(move |src, _| {
                let start = *started.get_or_insert_with(Instant::now);
                let due = start + frame_time * next;
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
                let rgb = gst_kafka_vision_examples::scene::render_rgb(first + next, width, height);
                let _ = src.push_buffer(gst::Buffer::from_mut_slice(rgb));
                next += 1;
            })
            .build(),
    );
}

fn main() {
    let args = gst_kafka_vision_examples::Args::parse(USAGE);
    let cameras: usize = args.number("cameras", 2);
    let port: u16 = args.number("port", 8554);
    let fps: u32 = args.number("fps", 10);
    let width: u32 = args.number("width", 640);
    let height: u32 = args.number("height", 480);
    let scripted = match args.get("scene", "balls").as_str() {
        "balls" => false,
        "crossing" => true,
        other => {
            eprintln!("camera-sim: --scene {other:?}: expected balls or crossing");
            std::process::exit(2);
        }
    };
    if cameras == 0 || fps == 0 || width < 16 || height < 16 {
        eprintln!(
            "camera-sim: --cameras and --fps must be at least 1, --width/--height at least 16"
        );
        std::process::exit(2);
    }
    if let Err(e) = gst_kafka_vision_examples::init() {
        eprintln!("camera-sim: GStreamer initialisation failed: {e}");
        std::process::exit(1);
    }
    for element in [
        "videotestsrc",
        "videoflip",
        "videoscale",
        "x264enc",
        "rtph264pay",
    ] {
        if gst::ElementFactory::find(element).is_none() {
            eprintln!(
                "camera-sim: the GStreamer element {element} is missing (install \
                 gstreamer1.0-plugins-base/-good/-ugly)"
            );
            std::process::exit(1);
        }
    }

    let main_loop = glib::MainLoop::new(None, false);
    let server = RTSPServer::new();
    server.set_address("127.0.0.1");
    server.set_service(&port.to_string());
    let user = args.get("user", "");
    if !user.is_empty() {
        let Some(password) = std::env::var("CAMERA_SIM_PASSWORD")
            .ok()
            .filter(|p| !p.is_empty())
        else {
            eprintln!("camera-sim: --user needs the password in CAMERA_SIM_PASSWORD");
            std::process::exit(2);
        };
        let auth = gst_rtsp_server::RTSPAuth::new();
        let token = gst_rtsp_server::RTSPToken::builder()
            .field(gst_rtsp_server::RTSP_TOKEN_MEDIA_FACTORY_ROLE, CAMERA_ROLE)
            .build();
        auth.add_basic(
            gst_rtsp_server::RTSPAuth::make_basic(&user, &password).as_str(),
            &token,
        );
        server.set_auth(Some(&auth));
    }
    let mounts = server.mount_points().expect("the server has mount points");
    for index in 0..cameras {
        let factory = RTSPMediaFactory::new();
        if scripted {
            factory.set_launch(&scene_launch(width, height, fps));
            factory.connect_media_configure(move |_, media| {
                play_scene(media, index, width, height, fps);
            });
        } else {
            factory.set_launch(&camera_launch(index, width, height, fps));
        }
        factory.set_shared(true);
        // Without --user there is no RTSPAuth and roles are not checked.
        factory.add_role_from_structure(
            &gst::Structure::builder(CAMERA_ROLE)
                .field(gst_rtsp_server::RTSP_PERM_MEDIA_FACTORY_ACCESS, true)
                .field(gst_rtsp_server::RTSP_PERM_MEDIA_FACTORY_CONSTRUCT, true)
                .build(),
        );
        mounts.add_factory(&format!("/cam{}", index + 1), factory);
    }
    let _server_source = match server.attach(None) {
        Ok(id) => id,
        Err(e) => {
            eprintln!("camera-sim: cannot listen on 127.0.0.1:{port}: {e} (port in use?)");
            std::process::exit(1);
        }
    };
    let bound = server.bound_port();
    if bound <= 0 {
        eprintln!("camera-sim: cannot listen on 127.0.0.1:{port}");
        std::process::exit(1);
    }

    // SIGINT/SIGTERM (ctrlc's "termination" feature) quit the main loop. (glib 0.22 no
    // longer wraps g_unix_signal_add.)
    let stop = Arc::new(AtomicBool::new(false));
    {
        let (main_loop, stop) = (main_loop.clone(), stop.clone());
        if let Err(e) = ctrlc::set_handler(move || {
            stop.store(true, Ordering::SeqCst);
            main_loop.quit();
        }) {
            eprintln!("camera-sim: cannot install the signal handler: {e}");
            std::process::exit(1);
        }
    }

    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        for index in 0..cameras {
            let _ = writeln!(out, "camera-sim: rtsp://127.0.0.1:{bound}/cam{}", index + 1);
        }
        let _ = writeln!(out, "camera-sim: ready");
        let _ = out.flush();
    }
    eprintln!(
        "camera-sim: {cameras} camera(s), {width}x{height} at {fps} fps, H.264 with a keyframe \
         every second, on port {bound}{}",
        if scripted {
            ", scripted crossing scene"
        } else {
            ""
        }
    );

    main_loop.run();

    // Close every client connection so readers see the camera go away at once, then let
    // the shared media shut down with the server.
    let mut closed = 0;
    server.client_filter(Some(&mut |_server, _client| {
        closed += 1;
        RTSPFilterResult::Remove
    }));
    if stop.load(Ordering::SeqCst) {
        eprintln!("camera-sim: stopping ({closed} client connection(s) closed)");
    }
    // Let the main context run the pending clean-ups of the closed clients.
    let context = glib::MainContext::default();
    while context.iteration(false) {}
}
