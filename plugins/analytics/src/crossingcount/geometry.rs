// SPDX-License-Identifier: MIT OR Apache-2.0
//! Lines and zones in frame coordinates (fractions of the frame's width and height, y
//! down), how to read them from the `lines`/`zones` properties and a JSON file, and the
//! plane geometry crossings need. Plain Rust, no GStreamer.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Point {
    pub x: f64,
    pub y: f64,
}

/// `(a - o) × (b - o)`: positive when `b` is to the right of the ray from `o` through `a`
/// on a screen (y down), negative to its left, 0 on it.
fn cross(o: Point, a: Point, b: Point) -> f64 {
    (a.x - o.x) * (b.y - o.y) - (a.y - o.y) * (b.x - o.x)
}

/// Which side of the line through `a` and `b` a point is on: +1 right (looking from `a`
/// to `b`, on a screen), -1 left, 0 on it.
pub fn side(a: Point, b: Point, p: Point) -> i8 {
    let c = cross(a, b, p);
    if c.abs() < 1e-12 {
        0
    } else if c > 0.0 {
        1
    } else {
        -1
    }
}

/// True when segments `p1 p2` and `q1 q2` have a point in common.
pub fn segments_meet(p1: Point, p2: Point, q1: Point, q2: Point) -> bool {
    let d1 = side(q1, q2, p1);
    let d2 = side(q1, q2, p2);
    let d3 = side(p1, p2, q1);
    let d4 = side(p1, p2, q2);
    if d1 * d2 < 0 && d3 * d4 < 0 {
        return true;
    }
    let on = |a: Point, b: Point, p: Point| {
        side(a, b, p) == 0
            && p.x >= a.x.min(b.x) - 1e-12
            && p.x <= a.x.max(b.x) + 1e-12
            && p.y >= a.y.min(b.y) - 1e-12
            && p.y <= a.y.max(b.y) + 1e-12
    };
    on(q1, q2, p1) || on(q1, q2, p2) || on(p1, p2, q1) || on(p1, p2, q2)
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Line {
    pub name: String,
    pub a: Point,
    pub b: Point,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Zone {
    pub name: String,
    pub corners: Vec<Point>,
}

impl Zone {
    /// Point in polygon by ray casting; points on an edge may go either way.
    pub fn contains(&self, p: Point) -> bool {
        let n = self.corners.len();
        let mut inside = false;
        for i in 0..n {
            let (a, b) = (self.corners[i], self.corners[(i + 1) % n]);
            if (a.y > p.y) != (b.y > p.y) {
                let x = a.x + (p.y - a.y) * (b.x - a.x) / (b.y - a.y);
                if p.x < x {
                    inside = !inside;
                }
            }
        }
        inside
    }
}

/// The lines and zones of one camera.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Layout {
    pub lines: Vec<Line>,
    pub zones: Vec<Zone>,
}

/// The layout of every camera: a default, and per camera (record key) overrides.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Layouts {
    pub default: Layout,
    pub cameras: BTreeMap<String, Layout>,
}

impl Layouts {
    pub fn for_camera(&self, camera: &str) -> &Layout {
        self.cameras.get(camera).unwrap_or(&self.default)
    }
}

/// `name:x1,y1,x2,y2,...;name:...` into named point lists; `what` names the property.
fn parse_named(text: &str, what: &str) -> Result<Vec<(String, Vec<Point>)>, String> {
    let mut out = Vec::new();
    for item in text.split(';').map(str::trim).filter(|i| !i.is_empty()) {
        let Some((name, numbers)) = item.split_once(':') else {
            return Err(format!(
                "{what}: '{item}' is not name:x1,y1,x2,y2,... (coordinates as fractions of \
                 the frame, e.g. gate:0.5,0,0.5,1)"
            ));
        };
        let values: Vec<f64> = numbers
            .split(',')
            .map(|v| v.trim().parse::<f64>())
            .collect::<Result<_, _>>()
            .map_err(|_| format!("{what}: '{item}' has a coordinate that is not a number"))?;
        if !values.len().is_multiple_of(2) {
            return Err(format!(
                "{what}: '{item}' has an odd number of coordinates; give x,y pairs"
            ));
        }
        let points = values
            .chunks(2)
            .map(|c| Point { x: c[0], y: c[1] })
            .collect();
        out.push((name.trim().to_string(), points));
    }
    Ok(out)
}

fn check_point(p: &Point, what: &str, name: &str) -> Result<(), String> {
    let ok = |v: f64| v.is_finite() && (0.0..=1.0).contains(&v);
    if ok(p.x) && ok(p.y) {
        Ok(())
    } else {
        Err(format!(
            "{what}: '{name}' has the point ({}, {}) outside the frame; coordinates are \
             fractions of the frame's width and height, 0 to 1",
            p.x, p.y
        ))
    }
}

fn line(name: String, points: Vec<Point>, what: &str) -> Result<Line, String> {
    if name.is_empty() {
        return Err(format!("{what}: a line has no name"));
    }
    if points.len() != 2 {
        return Err(format!(
            "{what}: line '{name}' has {} point(s); a line is two points, e.g. {name}:0.5,0,0.5,1",
            points.len()
        ));
    }
    for p in &points {
        check_point(p, what, &name)?;
    }
    if points[0] == points[1] {
        return Err(format!("{what}: line '{name}' has two equal points"));
    }
    Ok(Line {
        name,
        a: points[0],
        b: points[1],
    })
}

fn zone(name: String, corners: Vec<Point>, what: &str) -> Result<Zone, String> {
    if name.is_empty() {
        return Err(format!("{what}: a zone has no name"));
    }
    if corners.len() < 3 {
        return Err(format!(
            "{what}: zone '{name}' has {} corner(s); a zone needs at least three",
            corners.len()
        ));
    }
    for p in &corners {
        check_point(p, what, &name)?;
    }
    // Two edges that are not neighbours must not meet: the polygon would cross itself.
    let n = corners.len();
    for i in 0..n {
        for j in i + 1..n {
            let neighbours = j == i + 1 || (i == 0 && j == n - 1);
            if neighbours {
                continue;
            }
            let (a, b) = (corners[i], corners[(i + 1) % n]);
            let (c, d) = (corners[j], corners[(j + 1) % n]);
            if segments_meet(a, b, c, d) {
                return Err(format!(
                    "{what}: zone '{name}' crosses itself (edges {} and {}); list its corners \
                     in order around it",
                    i + 1,
                    j + 1
                ));
            }
        }
    }
    Ok(Zone { name, corners })
}

fn check_unique<'a>(names: impl Iterator<Item = &'a str>, what: &str) -> Result<(), String> {
    let mut seen = std::collections::BTreeSet::new();
    for name in names {
        if !seen.insert(name) {
            return Err(format!("{what}: the name '{name}' is used twice"));
        }
    }
    Ok(())
}

/// The layout of the `lines` and `zones` properties.
pub fn parse_properties(lines: &str, zones: &str) -> Result<Layout, String> {
    let layout = Layout {
        lines: parse_named(lines, "lines")?
            .into_iter()
            .map(|(name, points)| line(name, points, "lines"))
            .collect::<Result<_, _>>()?,
        zones: parse_named(zones, "zones")?
            .into_iter()
            .map(|(name, points)| zone(name, points, "zones"))
            .collect::<Result<_, _>>()?,
    };
    check_unique(layout.lines.iter().map(|l| l.name.as_str()), "lines")?;
    check_unique(layout.zones.iter().map(|z| z.name.as_str()), "zones")?;
    Ok(layout)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileShape {
    #[serde(default)]
    name: String,
    points: Vec<[f64; 2]>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileLayout {
    #[serde(default)]
    lines: Vec<FileShape>,
    #[serde(default)]
    zones: Vec<FileShape>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    lines: Vec<FileShape>,
    #[serde(default)]
    zones: Vec<FileShape>,
    #[serde(default)]
    cameras: BTreeMap<String, FileLayout>,
}

/// The layouts of a `config-file`:
/// `{"lines": [{"name": "gate", "points": [[0.5, 0], [0.5, 1]]}], "zones": [...],
///   "cameras": {"cam2": {"lines": [...], "zones": [...]}}}`.
pub fn parse_file(text: &str) -> Result<Layouts, String> {
    let what = "config-file";
    let file: File =
        serde_json::from_str(text).map_err(|e| format!("{what}: not a layout file: {e}"))?;
    let convert = |layout: FileLayout| -> Result<Layout, String> {
        let points = |s: &FileShape| {
            s.points
                .iter()
                .map(|[x, y]| Point { x: *x, y: *y })
                .collect::<Vec<_>>()
        };
        let layout = Layout {
            lines: layout
                .lines
                .iter()
                .map(|s| line(s.name.clone(), points(s), what))
                .collect::<Result<_, _>>()?,
            zones: layout
                .zones
                .iter()
                .map(|s| zone(s.name.clone(), points(s), what))
                .collect::<Result<_, _>>()?,
        };
        check_unique(layout.lines.iter().map(|l| l.name.as_str()), what)?;
        check_unique(layout.zones.iter().map(|z| z.name.as_str()), what)?;
        Ok(layout)
    };
    Ok(Layouts {
        default: convert(FileLayout {
            lines: file.lines,
            zones: file.zones,
        })?,
        cameras: file
            .cameras
            .into_iter()
            .map(|(camera, layout)| Ok((camera, convert(layout)?)))
            .collect::<Result<_, String>>()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(x: f64, y: f64) -> Point {
        Point { x, y }
    }

    #[test]
    fn sides_on_a_screen() {
        // A line from top to bottom: looking down it, screen-left is on its right.
        let (a, b) = (p(0.5, 0.0), p(0.5, 1.0));
        assert_eq!(side(a, b, p(0.2, 0.5)), 1);
        assert_eq!(side(a, b, p(0.8, 0.5)), -1);
        assert_eq!(side(a, b, p(0.5, 0.3)), 0);
        assert!(segments_meet(p(0.2, 0.5), p(0.8, 0.5), a, b));
        assert!(!segments_meet(p(0.2, 0.5), p(0.4, 0.5), a, b));
        // Past the end of a short line: no crossing.
        assert!(!segments_meet(
            p(0.2, 0.5),
            p(0.8, 0.5),
            p(0.5, 0.0),
            p(0.5, 0.4)
        ));
    }

    #[test]
    fn properties_parse_and_bad_ones_name_the_property() {
        let layout = parse_properties(
            "gate:0.5,0,0.5,1; exit : 0,0.9,1,0.9",
            "dock:0.1,0.1,0.4,0.1,0.4,0.4,0.1,0.4",
        )
        .unwrap();
        assert_eq!(layout.lines.len(), 2);
        assert_eq!(layout.lines[1].name, "exit");
        assert!(layout.zones[0].contains(p(0.2, 0.2)));
        assert!(!layout.zones[0].contains(p(0.5, 0.2)));

        let err = parse_properties("gate:0.5,0", "").unwrap_err();
        assert!(
            err.starts_with("lines:") && err.contains("1 point(s)"),
            "{err}"
        );
        let err = parse_properties("", "bow:0.1,0.1,0.4,0.4,0.4,0.1,0.1,0.4").unwrap_err();
        assert!(
            err.starts_with("zones:") && err.contains("crosses itself"),
            "{err}"
        );
        let err = parse_properties("", "thin:0.1,0.1,0.2,0.2").unwrap_err();
        assert!(err.contains("at least three"), "{err}");
        assert!(
            parse_properties("gate:0.5,0,x,1", "")
                .unwrap_err()
                .contains("not a number")
        );
        assert!(
            parse_properties("gate:0.5,0,0.5,2", "")
                .unwrap_err()
                .contains("outside")
        );
        assert!(
            parse_properties("gate 0.5,0,0.5,1", "")
                .unwrap_err()
                .contains("name:x1")
        );
        assert!(
            parse_properties("g:0,0,1,1;g:0,1,1,0", "")
                .unwrap_err()
                .contains("twice")
        );
    }

    #[test]
    fn a_file_gives_a_default_and_per_camera_layouts() {
        let layouts = parse_file(
            r#"{"lines": [{"name": "gate", "points": [[0.5, 0], [0.5, 1]]}],
                "cameras": {"cam2": {"zones": [{"name": "dock",
                    "points": [[0.1, 0.1], [0.4, 0.1], [0.4, 0.4]]}]}}}"#,
        )
        .unwrap();
        assert_eq!(layouts.for_camera("cam1").lines[0].name, "gate");
        assert!(layouts.for_camera("cam2").lines.is_empty());
        assert_eq!(layouts.for_camera("cam2").zones[0].name, "dock");
        let err = parse_file("{\"lines\": [").unwrap_err();
        assert!(err.starts_with("config-file:"), "{err}");
        let err = parse_file(r#"{"lines": [{"name": "g", "points": [[0.5, 0]]}]}"#).unwrap_err();
        assert!(err.contains("1 point(s)"), "{err}");
        let err = parse_file(r#"{"lanes": []}"#).unwrap_err();
        assert!(err.contains("lanes"), "{err}");
    }
}
