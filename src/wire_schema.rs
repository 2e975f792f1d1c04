//! JSON Schema fragments for what serde alone does not say about the wire types (command or
//! shell, at least one ready condition, a cursor's form, a signal's names, the error object),
//! and the wrappers that shape a command's payload and answer schemas (one or a batch, an
//! optional payload, one of two answers).
//!
//! Part of the stdout contract, kept as a leaf: the types carry these through schemars
//! attributes (`transform`, `schema_with`, `extend`), so a payload the schema accepts is one
//! the parser accepts. It imports nothing of ours but the error type names, so every module
//! that defines a wire type (`payload/`, `ready`, `output_log`) may use it, and the command
//! table and the schema registry (`crate::schema`) sit on top of all of them.

use std::borrow::Cow;
use std::marker::PhantomData;

use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde_json::{Value, json};

use crate::error::Error;

/// `start`: exactly one of `command` and `shell`; `args` only with `command`.
pub fn command_or_shell(schema: &mut Schema) {
    let given =
        |field: &str| json!({"required": [field], "properties": {field: {"type": "string"}}});
    schema.insert("oneOf".into(), json!([given("command"), given("shell")]));
    schema.insert("if".into(), given("shell"));
    schema.insert(
        "then".into(),
        json!({"properties": {"args": {"maxItems": 0}}}),
    );
}

/// `ready` / `until`: at least one of `log`, `port` and `http`.
pub fn some_condition(schema: &mut Schema) {
    let given = |field: &str, kind: &str| json!({"required": [field], "properties": {field: {"type": kind}}});
    schema.insert(
        "anyOf".into(),
        json!([
            given("log", "string"),
            given("port", "integer"),
            given("http", "string")
        ]),
    );
}

/// `wait`: `id` or `ids`, not both; `mode` only with `ids`; `until` conditions only with `id`.
pub fn one_or_several_ids(schema: &mut Schema) {
    let none = json!({"type": "null"});
    let exit = json!({"anyOf": [{"const": "exit"}, {"type": "null"}]});
    schema.insert(
        "oneOf".into(),
        json!([
            {"required": ["id"], "properties": {"id": {"type": "string"}, "ids": none, "mode": none,
                "tag": none, "tags": none, "status": none}},
            {"required": ["ids"], "properties": {"ids": {"type": "array"}, "id": none, "until": exit,
                "tag": none, "tags": none, "status": none}},
            {"anyOf": [{"required": ["tag"]}, {"required": ["tags"]}, {"required": ["status"]}],
                "properties": {"id": none, "ids": none, "until": exit}}
        ]),
    );
}

/// `stop`: an `id`, or a selector (`tag`, `tags`, `status`), not both.
pub fn id_or_selector(schema: &mut Schema) {
    let none = json!({"type": "null"});
    schema.insert(
        "oneOf".into(),
        json!([
            {"required": ["id"], "properties": {"id": {"type": "string"}, "tag": none, "tags": none, "status": none}},
            {"anyOf": [{"required": ["tag"]}, {"required": ["tags"]}, {"required": ["status"]}],
                "properties": {"id": none}}
        ]),
    );
}

/// `events`: one way of choosing tasks (`id`, `ids`, a selector, or none: every task);
/// `after` only with an `id`; `lines` with an `id`, `ids` or a selector.
pub fn events_choice(schema: &mut Schema) {
    let no_selector = json!({"ids": {"type": "null"}, "tag": {"type": "null"},
        "tags": {"type": "null"}, "status": {"type": "null"}});
    let mut one = no_selector.clone();
    one["id"] = json!({"type": "string"});
    let mut every = no_selector;
    every["after"] = json!({"type": "null"});
    every["lines"] = json!({"type": "null"});
    schema.insert(
        "anyOf".into(),
        json!([
            {"required": ["id"], "properties": one},
            {"required": ["ids"], "properties": {"id": {"type": "null"}, "after": {"type": "null"},
                "tag": {"type": "null"}, "tags": {"type": "null"}, "status": {"type": "null"}}},
            {"anyOf": [{"required": ["tag"]}, {"required": ["tags"]}, {"required": ["status"]}],
                "properties": {"id": {"type": "null"}, "ids": {"type": "null"}, "after": {"type": "null"}}},
            {"properties": every}
        ]),
    );
}

/// The names of `env`: non-empty, without `=`.
pub fn env_name() -> Value {
    json!({"minLength": 1, "pattern": "^[^=]+$"})
}

/// A log cursor, `<run>:<byte offset>`.
pub fn cursor(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "description": "A log position, `<run>:<byte offset>`: the run's number and a byte offset into that run's log, just past a whole line (`\"2:0\"` is the beginning of run 2). Pass an earlier answer's `next_cursor` (or a line's `cursor`) as `after` to read only what came after it; a cursor of an earlier run reads the current run from its beginning.",
        "type": "string",
        "pattern": CURSOR_PATTERN
    })
}

/// An optional log cursor.
pub fn optional_cursor(generator: &mut SchemaGenerator) -> Schema {
    let mut schema = cursor(generator);
    schema.insert("type".into(), json!(["string", "null"]));
    schema
}

const CURSOR_PATTERN: &str = "^[0-9]{1,10}:[0-9]{1,20}$";

/// `stop {signal}`: a name in any case, with or without `SIG`, or a number.
pub fn signal(_: &mut SchemaGenerator) -> Schema {
    use nix::sys::signal::Signal;
    let names: Vec<String> = Signal::iterator()
        .map(|s| {
            let bare = s.as_str().trim_start_matches("SIG");
            // Any case: each letter as a class, e.g. [Tt][Ee][Rr][Mm].
            bare.chars()
                .map(|c| {
                    if c.is_ascii_alphabetic() {
                        format!("[{}{}]", c.to_ascii_uppercase(), c.to_ascii_lowercase())
                    } else {
                        c.to_string()
                    }
                })
                .collect()
        })
        .collect();
    let numbers: Vec<i32> = Signal::iterator().map(|s| s as i32).collect();
    json_schema!({
        "description": "The first signal: a name (\"SIGINT\", \"INT\", any case) or a number; default SIGTERM.",
        "anyOf": [
            {"type": "string", "pattern": format!("^([Ss][Ii][Gg])?({})$", names.join("|"))},
            {"type": "integer", "enum": numbers},
            {"type": "null"}
        ]
    })
}

/// `wait {until}`: the word `"exit"`.
pub fn exit_word(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "description": "Until the task has ended (the default).",
        "const": "exit"
    })
}

/// The `error` object of a failure envelope, and of a failed batch item.
pub fn error_object() -> Schema {
    let mut schema = error_schema();
    schema.insert(
        "$schema".into(),
        json!("https://json-schema.org/draft/2020-12/schema"),
    );
    schema
}

/// The error object, for use inside another schema.
pub fn error_schema() -> Schema {
    json_schema!({
        "description": "What went wrong: `{type, message, details}`. `details` always holds `hint` (the next step to take) and `retryable` (whether the same call may succeed later), plus fields of the error type (`id`, `path`, `status`, `log_tail`, ...).",
        "type": "object",
        "required": ["type", "message", "details"],
        "additionalProperties": false,
        "properties": {
            "type": {"enum": Error::TYPES},
            "message": {"type": "string"},
            "details": {
                "type": "object",
                "required": ["hint", "retryable"],
                "properties": {
                    "hint": {"type": "string"},
                    "retryable": {"type": "boolean"}
                }
            }
        }
    })
}

/// `schema_with` for a batch item's `error`.
pub fn optional_error(_: &mut SchemaGenerator) -> Schema {
    error_schema()
}

/// The root schema of a payload type `T` (draft 2020-12, as deserialized).
pub fn input<T: JsonSchema>() -> Schema {
    SchemaSettings::draft2020_12()
        .for_deserialize()
        .into_generator()
        .into_root_schema_for::<T>()
}

/// The root schema of an answer type `T` (draft 2020-12, as serialized).
pub fn output<T: JsonSchema>() -> Schema {
    SchemaSettings::draft2020_12()
        .for_serialize()
        .into_generator()
        .into_root_schema_for::<T>()
}

/// A payload that is one item or a non-empty array of them (a batch).
#[derive(Debug)]
pub struct OneOrBatch<T>(PhantomData<T>);

impl<T: JsonSchema> JsonSchema for OneOrBatch<T> {
    fn schema_name() -> Cow<'static, str> {
        format!("OneOrBatch_{}", T::schema_name()).into()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let one = generator.subschema_for::<T>();
        json_schema!({
            "description": "One item, or a non-empty array of them run as a batch (answered in input order).",
            "anyOf": [
                one,
                {"type": "array", "items": one, "minItems": 1}
            ]
        })
    }
}

/// A payload that may be left out (the command then uses its defaults).
#[derive(Debug)]
pub struct Optional<T>(PhantomData<T>);

impl<T: JsonSchema> JsonSchema for Optional<T> {
    fn schema_name() -> Cow<'static, str> {
        T::schema_name()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let mut schema = T::json_schema(generator);
        let note = "The payload may be left out: every field is optional.";
        let description = match schema.get("description").and_then(Value::as_str) {
            Some(text) => format!("{text}\n\n{note}"),
            None => note.to_owned(),
        };
        schema.insert("description".into(), json!(description));
        schema
    }
}

/// An answer that takes one of two shapes.
#[derive(Debug)]
pub struct AnyOf<A, B>(PhantomData<(A, B)>);

impl<A: JsonSchema, B: JsonSchema> JsonSchema for AnyOf<A, B> {
    fn schema_name() -> Cow<'static, str> {
        format!("AnyOf_{}_{}", A::schema_name(), B::schema_name()).into()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let a = generator.subschema_for::<A>();
        let b = generator.subschema_for::<B>();
        json_schema!({ "anyOf": [a, b] })
    }
}
