// SPDX-License-Identifier: MIT OR Apache-2.0
//! Each plugin README's property tables say what the registered elements have: one table
//! per element, the same property names, types, enum values and defaults (the values a new
//! element starts with), read-only where they say so. Only the element's own properties count (not those of
//! GstObject, GstElement, GstBaseSrc, ...). Enum and flags types of properties must be
//! marked as plugin API, so GStreamer's docs tools document them with the element.

mod docs;

use std::collections::{BTreeMap, BTreeSet};

use gst::glib;
use gst::prelude::*;

/// The header row every property table starts with.
const TABLE_HEADER: &str = "| property | type, default | meaning |";

/// One row of a property table, e.g. "| `brokers` | string, `localhost:9092` | ... |".
struct Row {
    line: usize,
    /// "string", "uint", "bool", ..., or the enum's values for "`a`/`b`".
    kind: Kind,
    default: Default,
}

enum Kind {
    Named(String),
    Enum(Vec<String>),
}

/// What the "type, default" column says after its last comma.
#[derive(Debug, PartialEq)]
enum Default {
    /// `value`
    Value(String),
    /// "none" or "required": the property starts unset.
    Unset,
    /// "empty": an empty string.
    Empty,
    /// "read-only": no default to state.
    ReadOnly,
}

impl std::fmt::Display for Default {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Default::Value(value) => write!(f, "`{value}`"),
            Default::Unset => f.write_str("none"),
            Default::Empty => f.write_str("empty"),
            Default::ReadOnly => f.write_str("read-only"),
        }
    }
}

/// The property tables of one README: element name → (line of its table, rows by property).
type Tables = BTreeMap<String, (usize, BTreeMap<String, Row>)>;

/// Reads every property table of `readme` (its text) and the element section it is in: a
/// heading "## `element`".
fn property_tables(path: &str, readme: &str) -> Tables {
    let mut tables = Tables::new();
    let mut element: Option<String> = None;
    let mut current: Option<String> = None;
    for (index, line) in readme.lines().enumerate() {
        let number = index + 1;
        if line.starts_with('#') {
            element = line
                .trim_start_matches('#')
                .trim()
                .strip_prefix('`')
                .and_then(|rest| rest.strip_suffix('`'))
                .map(String::from);
            current = None;
            continue;
        }
        if line.trim() == TABLE_HEADER {
            let name = element.clone().unwrap_or_else(|| {
                panic!("{path}:{number}: a property table outside a \"## `element`\" section")
            });
            assert!(
                !tables.contains_key(&name),
                "{path}:{number}: a second property table for {name}"
            );
            tables.insert(name.clone(), (number, BTreeMap::new()));
            current = Some(name);
            continue;
        }
        let Some(name) = current.as_ref() else {
            continue;
        };
        if !line.starts_with('|') {
            current = None;
            continue;
        }
        if line.starts_with("|---") {
            continue;
        }
        let (property, row) = parse_row(path, number, line);
        let rows = &mut tables.get_mut(name).unwrap().1;
        assert!(
            rows.insert(property.clone(), row).is_none(),
            "{path}:{number}: {name}'s property {property} is listed twice"
        );
    }
    tables
}

fn parse_row(path: &str, number: usize, line: &str) -> (String, Row) {
    let mut cells = line.trim_start_matches('|').splitn(3, '|').map(str::trim);
    let (Some(property), Some(type_default)) = (cells.next(), cells.next()) else {
        panic!("{path}:{number}: not a property row: {line}");
    };
    let property = property
        .strip_prefix('`')
        .and_then(|rest| rest.strip_suffix('`'))
        .unwrap_or_else(|| panic!("{path}:{number}: the property name is not in backticks"));
    let (kind, default) = type_default.rsplit_once(", ").unwrap_or_else(|| {
        panic!("{path}:{number}: the type column is not \"type, default\": {type_default}")
    });
    let default = match default {
        "none" | "required" => Default::Unset,
        "empty" => Default::Empty,
        "read-only" => Default::ReadOnly,
        quoted => Default::Value(
            quoted
                .strip_prefix('`')
                .and_then(|rest| rest.strip_suffix('`'))
                .unwrap_or_else(|| {
                    panic!(
                        "{path}:{number}: the default of {property} is neither `value`, none, \
                         required, empty nor read-only: {quoted}"
                    )
                })
                .to_string(),
        ),
    };
    let kind = if kind.starts_with('`') {
        Kind::Enum(
            kind.split('/')
                .map(|v| v.trim_matches('`').to_string())
                .collect(),
        )
    } else {
        Kind::Named(kind.split(' ').next().unwrap().to_string())
    };
    (
        property.to_string(),
        Row {
            line: number,
            kind,
            default,
        },
    )
}

/// The type column's word for a property's value type.
fn kind_name(pspec: &glib::ParamSpec) -> &'static str {
    let value_type = pspec.value_type();
    match value_type {
        t if t == glib::Type::STRING => "string",
        t if t == glib::Type::BOOL => "bool",
        t if t == glib::Type::U32 => "uint",
        t if t == glib::Type::I32 => "int",
        t if t == glib::Type::U64 => "uint64",
        t if t == glib::Type::I64 => "int64",
        t if t == glib::Type::F64 => "double",
        t if t == gst::Caps::static_type() => "caps",
        t if t == gst::Structure::static_type() => "structure",
        other => panic!(
            "property {} has type {other}, which tests/property_tables.rs does not know yet",
            pspec.name()
        ),
    }
}

/// The value a new element starts with, as the table writes it. This is what gst-inspect
/// shows as the default; the param spec's own default may differ (NULL for a string
/// property whose setting starts empty).
fn default_of(element: &gst::Element, pspec: &glib::ParamSpec) -> Default {
    let value = element.property_value(pspec.name());
    if let Some((_, enum_value)) = glib::EnumValue::from_value(&value) {
        return Default::Value(enum_value.nick().to_string());
    }
    let text = match kind_name(pspec) {
        "string" => value.get::<Option<String>>().unwrap(),
        "bool" => Some(value.get::<bool>().unwrap().to_string()),
        "uint" => Some(value.get::<u32>().unwrap().to_string()),
        "int" => Some(value.get::<i32>().unwrap().to_string()),
        "uint64" => Some(value.get::<u64>().unwrap().to_string()),
        "int64" => Some(value.get::<i64>().unwrap().to_string()),
        "double" => Some(value.get::<f64>().unwrap().to_string()),
        "caps" => value
            .get::<Option<gst::Caps>>()
            .unwrap()
            .map(|c| c.to_string()),
        _ => value
            .get::<Option<gst::Structure>>()
            .unwrap()
            .map(|s| s.to_string()),
    };
    match text {
        None => Default::Unset,
        Some(text) if text.is_empty() => Default::Empty,
        Some(text) => Default::Value(text),
    }
}

/// What is wrong with `element`'s table in `path`, one line per difference.
fn differences(
    path: &str,
    element: &str,
    line: usize,
    rows: &BTreeMap<String, Row>,
) -> Vec<String> {
    let mut found = Vec::new();
    let instance = gst::ElementFactory::make(element)
        .build()
        .unwrap_or_else(|e| panic!("{path}:{line}: no element {element}: {e}"));
    let own: BTreeMap<String, glib::ParamSpec> = instance
        .list_properties()
        .iter()
        .filter(|pspec| pspec.owner_type() == instance.type_())
        .map(|pspec| (pspec.name().to_string(), pspec.clone()))
        .collect();
    for name in own.keys().filter(|name| !rows.contains_key(*name)) {
        found.push(format!(
            "{path}:{line}: {element} has the property {name}, missing from its table"
        ));
    }
    for (name, row) in rows {
        let at = format!("{path}:{}: {element}'s property {name}", row.line);
        let Some(pspec) = own.get(name) else {
            found.push(format!(
                "{at} is in the table, but {element} has no such property"
            ));
            continue;
        };
        let value_type = pspec.value_type();
        let is_enum = value_type.is_a(glib::Type::ENUM);
        if (is_enum || value_type.is_a(glib::Type::FLAGS))
            && value_type.plugin_api_flags().is_none()
        {
            found.push(format!(
                "{at}: its type {value_type} is not marked as plugin API (mark_as_plugin_api in \
                 the element's register())"
            ));
        }
        match (&row.kind, is_enum) {
            (Kind::Enum(listed), true) => {
                let class = glib::EnumClass::with_type(value_type).unwrap();
                let nicks: BTreeSet<&str> = class.values().iter().map(|v| v.nick()).collect();
                let listed: BTreeSet<&str> = listed.iter().map(String::as_str).collect();
                if nicks != listed {
                    found.push(format!(
                        "{at}: the table lists {listed:?}, the element takes {nicks:?}"
                    ));
                }
            }
            (Kind::Enum(_), false) => found.push(format!(
                "{at}: the table lists values, but its type is {value_type}"
            )),
            (Kind::Named(kind), true) => found.push(format!(
                "{at}: the table says {kind}, but it is the enum {value_type}: list its values"
            )),
            (Kind::Named(kind), false) => {
                let real = kind_name(pspec);
                if kind != real {
                    found.push(format!(
                        "{at}: the table says {kind}, the element has {real}"
                    ));
                }
            }
        }
        let writable = pspec.flags().contains(glib::ParamFlags::WRITABLE);
        match (&row.default, writable) {
            (Default::ReadOnly, false) => {}
            (Default::ReadOnly, true) => found.push(format!(
                "{at}: the table says read-only, but it is writable"
            )),
            (_, false) => found.push(format!("{at}: read-only, the table should say so")),
            (listed, true) => {
                let real = default_of(&instance, pspec);
                if *listed != real {
                    found.push(format!(
                        "{at}: the table gives the default {listed}, the element {real}"
                    ));
                }
            }
        }
    }
    found
}

#[test]
fn property_tables_match_the_elements() {
    docs::init();
    let mut found = Vec::new();
    for (plugin, path) in docs::PLUGIN_READMES {
        let tables = property_tables(path, &docs::read(path));
        let elements: BTreeSet<String> = gst::Registry::get()
            .features_by_plugin(plugin)
            .into_iter()
            .filter(|feature| feature.is::<gst::ElementFactory>())
            .map(|feature| feature.name().to_string())
            .collect();
        assert!(!elements.is_empty(), "plugin {plugin} is not registered");
        for element in elements.iter().filter(|e| !tables.contains_key(*e)) {
            found.push(format!(
                "{path}: no property table for {element} (a \"## `{element}`\" section with a \
                 \"{TABLE_HEADER}\" table)"
            ));
        }
        for (element, (line, rows)) in &tables {
            if !elements.contains(element) {
                found.push(format!(
                    "{path}:{line}: a property table for {element}, which plugin {plugin} does \
                     not have"
                ));
                continue;
            }
            found.extend(differences(path, element, *line, rows));
        }
    }
    assert!(
        found.is_empty(),
        "property tables and elements disagree:\n{}",
        found.join("\n")
    );
}

/// The checks above would pass on tables they cannot read: this one reads a table written
/// wrong on purpose and expects every kind of difference to be named.
#[test]
fn a_wrong_table_is_named_in_detail() {
    docs::init();
    let readme = "\
## `kafkasink`

| property | type, default | meaning |
|---|---|---|
| `brokers` | string, `localhost:9093` | wrong default |
| `compression` | `none`/`gzip`, `none` | values missing |
| `eos-marker` | uint, `true` | wrong type |
| `stats` | structure, none | not said read-only |
| `no-such-property` | bool, `false` | not a property |
";
    let tables = property_tables("test.md", readme);
    let (line, rows) = &tables["kafkasink"];
    let found = differences("test.md", "kafkasink", *line, rows).join("\n");
    for expected in [
        "test.md:5: kafkasink's property brokers: the table gives the default `localhost:9093`, the element `localhost:9092`",
        "test.md:6: kafkasink's property compression: the table lists {\"gzip\", \"none\"}",
        "test.md:7: kafkasink's property eos-marker: the table says uint, the element has bool",
        "test.md:8: kafkasink's property stats: read-only, the table should say so",
        "test.md:9: kafkasink's property no-such-property is in the table, but kafkasink has no such property",
        "test.md:3: kafkasink has the property topic, missing from its table",
    ] {
        assert!(
            found.contains(expected),
            "missing {expected:?} in:\n{found}"
        );
    }
}
