//! schemas/openapi.yaml is a valid OpenAPI 3.1 document: it passes the OpenAPI Initiative's
//! schema (vendored in schemas/vendor/, no network), every `$ref` resolves, every example
//! passes its schema, and it names exactly the operations of CONTRACT.md §10. No server
//! involved.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

/// The URI the document is read at. The schemas' `$id`s share its folder, so a relative
/// `./cloudevent.v1.json` in the document names the `$id` of `schemas/cloudevent.v1.json`.
const BASE: &str = "https://raccordo.example/schemas/openapi.yaml";
const SCHEMAS: &str = "https://raccordo.example/schemas/";
/// The `$id` of the vendored OpenAPI 3.1 schema (the OpenAPI Initiative's, 2022-10-07).
const OAS_3_1_SCHEMA_ID: &str = "https://spec.openapis.org/oas/3.1/schema/2022-10-07";

fn read(path: &str) -> String {
    std::fs::read_to_string(raccordo_e2e::workspace_root().join(path))
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn document() -> Value {
    serde_yaml_ng::from_str(&read("schemas/openapi.yaml"))
        .unwrap_or_else(|e| panic!("schemas/openapi.yaml is not YAML (as JSON values): {e}"))
}

fn json_file(path: &str) -> Value {
    serde_json::from_str(&read(path)).unwrap_or_else(|e| panic!("{path} is not JSON: {e}"))
}

/// The JSON Schema files of `schemas/` (not its subfolders), by file name.
fn schema_files() -> BTreeMap<String, Value> {
    let dir = raccordo_e2e::workspace_root().join("schemas");
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("a directory entry").path();
        if path.extension().is_some_and(|e| e == "json") {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let schema = json_file(&format!("schemas/{name}"));
            files.insert(name, schema);
        }
    }
    assert!(
        files.len() >= 7,
        "the schemas were read: {:?}",
        files.keys()
    );
    files
}

/// RFC 6901: one reference token.
fn escape(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

/// Every value of `value` with its JSON pointer, depth first.
fn walk<'a>(value: &'a Value, pointer: &str, visit: &mut dyn FnMut(&str, &'a Value)) {
    visit(pointer, value);
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                walk(inner, &format!("{pointer}/{}", escape(key)), visit);
            }
        }
        Value::Array(items) => {
            for (i, inner) in items.iter().enumerate() {
                walk(inner, &format!("{pointer}/{i}"), visit);
            }
        }
        _ => {}
    }
}

/// A JSON pointer as a URI fragment (RFC 6901 §6).
fn fragment(pointer: &str) -> String {
    let mut out = String::with_capacity(pointer.len());
    for byte in pointer.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~/".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

// ------------------------------------------------------------------ 1. the OpenAPI schema

/// Why `doc` fails the OpenAPI Initiative's schema of 3.1 documents, formats asserted.
fn meta_schema_errors(doc: &Value) -> Vec<String> {
    let meta = json_file("schemas/vendor/openapi-3.1.schema.json");
    assert_eq!(
        meta["$id"], OAS_3_1_SCHEMA_ID,
        "the vendored schema is the 2022-10-07 one"
    );
    let validator = jsonschema::options()
        .offline()
        .should_validate_formats(true)
        .build(&meta)
        .unwrap_or_else(|e| panic!("the vendored OpenAPI 3.1 schema compiles offline: {e}"));
    validator
        .iter_errors(doc)
        .map(|e| format!("at {:?}: {e}", e.instance_path().to_string()))
        .collect()
}

#[test]
fn openapi_document_passes_the_openapi_3_1_schema() {
    let doc = document();
    assert_eq!(doc["openapi"], "3.1.0");
    let errors = meta_schema_errors(&doc);
    assert!(errors.is_empty(), "schemas/openapi.yaml: {errors:#?}");

    // The check is not vacuous: a document without `info`, or with a status code that is not
    // one, fails it.
    let mut broken = doc.clone();
    broken.as_object_mut().expect("an object").remove("info");
    assert!(
        !meta_schema_errors(&broken).is_empty(),
        "a document without info passed"
    );
    let mut broken = doc;
    broken["paths"]["/v1/stream"]["get"]["responses"]["2000"] = json!({"description": "x"});
    assert!(
        !meta_schema_errors(&broken).is_empty(),
        "a status code 2000 passed"
    );
}

// ------------------------------------------------------------------ 2. references

/// Every `$ref` of `doc` that does not resolve, with where it is: `#/…` in `doc`, relative
/// ones in the JSON Schema files of `schemas/` (`files`), with their fragment if any.
fn unresolved_references(doc: &Value, files: &BTreeMap<String, Value>) -> Vec<String> {
    let mut refs = Vec::new();
    walk(doc, "", &mut |pointer, value| {
        if let Some(Value::String(target)) = value.get("$ref") {
            refs.push((pointer.to_owned(), target.clone()));
        }
    });
    let mut problems = Vec::new();
    for (at, target) in &refs {
        let (file, frag) = target.split_once('#').unwrap_or((target, ""));
        let frag = percent_decode(frag);
        let resource = if file.is_empty() {
            Some(doc)
        } else if file.contains(':') || file.contains("..") {
            problems.push(format!("{at}: {target}: not a file of schemas/"));
            continue;
        } else {
            files.get(file.strip_prefix("./").unwrap_or(file))
        };
        let Some(resource) = resource else {
            problems.push(format!("{at}: {target}: no such file in schemas/"));
            continue;
        };
        let found = if frag.is_empty() || frag.starts_with('/') {
            resource.pointer(&frag).is_some()
        } else {
            let mut anchored = false;
            walk(resource, "", &mut |_, value| {
                anchored |= value.get("$anchor").is_some_and(|a| a == frag.as_str());
            });
            anchored
        };
        if !found {
            problems.push(format!("{at}: {target}: no such fragment"));
        }
        // A component is referred to where one of its kind belongs.
        let segments: Vec<&str> = at.split('/').collect();
        if let [.., kind @ ("responses" | "parameters" | "headers"), _] = segments.as_slice()
            && !target.starts_with(&format!("#/components/{kind}/"))
        {
            problems.push(format!("{at}: {target}: not one of #/components/{kind}"));
        }
    }
    assert!(refs.len() >= 30, "the references were read: {refs:?}");
    problems
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn openapi_every_reference_resolves() {
    let doc = document();
    let files = schema_files();
    let problems = unresolved_references(&doc, &files);
    assert!(problems.is_empty(), "unresolved references: {problems:#?}");

    // The check is not vacuous.
    let mut broken = doc;
    let schemas = &mut broken["components"]["schemas"];
    schemas["A"] = json!({"$ref": "#/components/schemas/Nothing"});
    schemas["B"] = json!({"$ref": "./nothing.v1.json"});
    schemas["C"] = json!({"$ref": "./cloudevent.v1.json#/properties/nothing"});
    schemas["D"] = json!({"$ref": "https://raccordo.example/schemas/cloudevent.v1.json"});
    schemas["E"] = json!({"$ref": "./cloudevent.v1.json#nothing"});
    broken["paths"]["/v1/stream"]["get"]["responses"]["400"] =
        json!({"$ref": "#/components/schemas/Problem"});
    let problems = unresolved_references(&broken, &files);
    assert_eq!(
        problems.len(),
        6,
        "each broken reference is found: {problems:#?}"
    );
}

// ------------------------------------------------------------------ 3. examples

/// The document and the JSON Schema files of `schemas/` under their `$id`s, the document at
/// [`BASE`]: a schema anywhere in the document compiles by its pointer, offline.
fn registry(doc: &Value) -> jsonschema::Registry<'static> {
    let mut resources = vec![(BASE.to_owned(), doc.clone())];
    for (name, schema) in schema_files() {
        let id = format!("{SCHEMAS}{name}");
        assert_eq!(schema["$id"], id.as_str(), "schemas/{name}: its $id");
        resources.push((id, schema));
    }
    jsonschema::Registry::new()
        .extend(resources)
        .and_then(|builder| builder.prepare())
        .unwrap_or_else(|e| panic!("the schemas register: {e}"))
}

/// What `component` (a schema of `#/components/schemas`) finds wrong with `value`: the live
/// answers of the ingestion tests are checked against the document with it.
pub(crate) fn component_errors(component: &str, value: &Value) -> Vec<String> {
    let doc = document();
    let registry = registry(&doc);
    let root = json!({"$ref": format!("{BASE}#/components/schemas/{component}")});
    let validator = jsonschema::options()
        .offline()
        .with_registry(&registry)
        .build(&root)
        .unwrap_or_else(|e| panic!("{component} compiles: {e}"));
    validator
        .iter_errors(value)
        .map(|e| format!("at {:?}: {e}", e.instance_path().to_string()))
        .collect()
}

/// Every example of `doc` (`example`, `examples.*.value` beside a `schema`; `examples` of a
/// Schema Object) that fails its schema, and how many examples there are.
fn failing_examples(doc: &Value) -> (Vec<String>, usize) {
    // (where the example is, the pointer of its schema, the example)
    let mut examples: Vec<(String, String, &Value)> = Vec::new();
    walk(doc, "", &mut |pointer, value| {
        let Some(object) = value.as_object() else {
            return;
        };
        if object.get("schema").is_some_and(Value::is_object) {
            let schema = format!("{pointer}/schema");
            if let Some(example) = object.get("example") {
                examples.push((format!("{pointer}/example"), schema.clone(), example));
            }
            if let Some(Value::Object(named)) = object.get("examples") {
                for (name, example) in named {
                    let at = format!("{pointer}/examples/{}", escape(name));
                    let value = example
                        .get("value")
                        .unwrap_or_else(|| panic!("{at}: an example without a value"));
                    examples.push((at, schema.clone(), value));
                }
            }
        } else if let Some(Value::Array(listed)) = object.get("examples") {
            for (i, example) in listed.iter().enumerate() {
                examples.push((
                    format!("{pointer}/examples/{i}"),
                    pointer.to_owned(),
                    example,
                ));
            }
        }
    });
    let registry = registry(doc);
    let mut failures = Vec::new();
    for (at, schema, example) in &examples {
        let root = json!({"$ref": format!("{BASE}#{}", fragment(schema))});
        let validator = jsonschema::options()
            .offline()
            .with_registry(&registry)
            .build(&root)
            .unwrap_or_else(|e| panic!("{schema} compiles: {e}"));
        for error in validator.iter_errors(example) {
            failures.push(format!(
                "{at} at {:?}: {error}",
                error.instance_path().to_string()
            ));
        }
    }
    (failures, examples.len())
}

#[test]
fn openapi_every_example_passes_its_schema() {
    let doc = document();
    let (failures, count) = failing_examples(&doc);
    assert!(
        failures.is_empty(),
        "examples failing their schema: {failures:#?}"
    );
    assert!(count >= 25, "only {count} examples found");

    // Every request and response body shows one.
    let mut missing = Vec::new();
    walk(&doc, "", &mut |pointer, value| {
        if (pointer.ends_with("/requestBody/content") || pointer.contains("/responses/"))
            && pointer.ends_with("/content")
            && let Some(media) = value.as_object()
        {
            for (name, media_type) in media {
                if media_type.get("example").is_none() && media_type.get("examples").is_none() {
                    missing.push(format!("{pointer}/{}", escape(name)));
                }
            }
        }
    });
    assert!(
        missing.is_empty(),
        "bodies without an example: {missing:#?}"
    );

    // The check is not vacuous: it follows `$ref`s into schemas/, into the data schemas too.
    let events = "/paths/~1v1~1events/post/requestBody/content";
    let mut broken = doc;
    let batch = broken
        .pointer_mut(&format!(
            "{events}/application~1cloudevents-batch+json/example/0/data"
        ))
        .expect("the batch example");
    batch["places"] = json!(0);
    let stream = "/paths/~1v1~1stream/get/responses/200/content/application~1json/example";
    let page = broken.pointer_mut(stream).expect("the stream example");
    page["items"][0]["notification"]["kind"] = json!("housing.nothing");
    let (failures, _) = failing_examples(&broken);
    assert!(
        failures
            .iter()
            .any(|f| f.contains("batch") && f.contains("/0/data/places"))
            && failures
                .iter()
                .any(|f| f.contains("/items/0/notification/kind")),
        "broken examples are found: {failures:#?}"
    );
}

// ------------------------------------------------------------------ 4. the operations

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// `#/components/…` references followed within the document.
fn resolve<'a>(doc: &'a Value, value: &'a Value) -> &'a Value {
    match value.get("$ref").and_then(Value::as_str) {
        Some(target) => {
            let pointer = target
                .strip_prefix('#')
                .expect("a reference within the document");
            resolve(doc, doc.pointer(pointer).expect("resolves"))
        }
        None => value,
    }
}

#[test]
fn openapi_paths_are_exactly_those_of_contract_section_10() {
    let doc = document();
    let mut operations = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in METHODS.iter().filter(|m| item.get(**m).is_some()) {
            operations.insert(format!("{} {path}", method.to_uppercase()));
        }
    }
    let expected = ["GET /v1/stream", "POST /v1/csv/{type}", "POST /v1/events"];
    assert_eq!(operations.into_iter().collect::<Vec<_>>(), expected);

    let events = &doc["paths"]["/v1/events"]["post"];
    let media: Vec<&String> = events["requestBody"]["content"]
        .as_object()
        .expect("content")
        .keys()
        .collect();
    assert_eq!(
        media,
        [
            "application/cloudevents+json",
            "application/cloudevents-batch+json",
            "application/json"
        ]
    );
    let csv = &doc["paths"]["/v1/csv/{type}"]["post"];
    let parameter = |operation: &Value, name: &str| -> Value {
        let list = operation["parameters"].as_array().expect("parameters");
        list.iter()
            .map(|p| resolve(&doc, p))
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("parameter {name}"))
            .clone()
    };
    assert_eq!(
        parameter(csv, "type")["schema"]["enum"],
        json!(["housing.unit.v1", "reception.occupancy.v1"])
    );
    assert_eq!(parameter(csv, "dry_run")["schema"]["default"], false);
    let stream = &doc["paths"]["/v1/stream"]["get"];
    let limit = parameter(stream, "limit")["schema"].clone();
    assert_eq!(
        (&limit["minimum"], &limit["maximum"], &limit["default"]),
        (&json!(1), &json!(1000), &json!(100))
    );
    for name in [
        "ce-specversion",
        "ce-id",
        "ce-source",
        "ce-type",
        "ce-time",
        "ce-subject",
    ] {
        assert_eq!(parameter(events, name)["in"], "header", "{name}");
    }
    let bearer = &doc["components"]["securitySchemes"]["bearer"];
    assert_eq!(
        (&bearer["type"], &bearer["scheme"]),
        (&json!("http"), &json!("bearer"))
    );
    assert_eq!(doc["security"], json!([{"bearer": []}]));
}

#[test]
fn openapi_operations_answer_the_status_codes_and_problem_types_of_contract_section_10() {
    let doc = document();
    let common = [
        ("401", "unauthorized"),
        ("403", "forbidden"),
        ("408", "body-timeout"),
        ("413", "too-large"),
        ("415", "unsupported-media-type"),
        ("429", "rate-limited"),
        ("503", "broker-unavailable"),
    ];
    let mut expected: Vec<(&str, Vec<(&str, &str)>)> = vec![
        ("/v1/events", vec![("202", ""), ("400", "invalid-event")]),
        (
            "/v1/csv/{type}",
            vec![("200", ""), ("202", ""), ("400", "invalid-csv")],
        ),
        (
            "/v1/stream",
            vec![
                ("200", ""),
                ("400", "invalid-cursor"),
                ("401", "unauthorized"),
                ("403", "forbidden"),
            ],
        ),
    ];
    expected[0].1.extend(common);
    expected[1].1.extend(common);
    for (path, codes) in expected {
        let item = doc["paths"][path].as_object().expect("the path");
        let (_, operation) = item
            .iter()
            .find(|(k, _)| METHODS.contains(&k.as_str()))
            .expect("op");
        let responses = operation["responses"].as_object().expect("responses");
        let found: BTreeSet<&str> = responses.keys().map(String::as_str).collect();
        let wanted: BTreeSet<&str> = codes.iter().map(|(code, _)| *code).collect();
        assert_eq!(found, wanted, "{path}: status codes");
        for (code, slug) in codes {
            let response = resolve(&doc, &responses[code]);
            if slug.is_empty() {
                assert!(
                    response["content"]["application/json"].is_object(),
                    "{path} {code}"
                );
                continue;
            }
            let problem = &response["content"]["application/problem+json"];
            assert_eq!(
                problem["schema"]["$ref"], "#/components/schemas/Problem",
                "{path} {code}"
            );
            let example = &problem["example"];
            assert_eq!(
                example["type"],
                format!("urn:raccordo:problem:{slug}"),
                "{path} {code}"
            );
            assert_eq!(example["status"].to_string(), code, "{path} {code}");
            let headers = response["headers"]
                .as_object()
                .map(|h| h.keys().collect::<Vec<_>>());
            let headers = headers.unwrap_or_default();
            match code {
                "401" => assert_eq!(headers, ["WWW-Authenticate"], "{path} {code}"),
                "429" | "503" => assert_eq!(headers, ["Retry-After"], "{path} {code}"),
                _ => assert!(headers.is_empty(), "{path} {code}: {headers:?}"),
            }
        }
    }
    let slugs = doc["components"]["schemas"]["Problem"]["properties"]["type"]["enum"].clone();
    assert_eq!(
        slugs.as_array().map(Vec::len),
        Some(11),
        "every problem type is listed once"
    );
}
