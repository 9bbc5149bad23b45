//! The FHIR REST API: CRUD with versions and ETags, search, OperationOutcomes, events, org isolation.

use crate::helpers::{spawn_app, spawn_app_with, TestApp};
use reqwest::{Method, Response};
use serde_json::{json, Value};

async fn fhir(
    app: &TestApp,
    key: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> Response {
    let mut request = app.client.request(method, app.url(path)).bearer_auth(key);
    if let Some(body) = body {
        request = request
            .header("content-type", "application/fhir+json")
            .body(body.to_string());
    }
    request.send().await.expect("request")
}

fn patient(family: &str) -> Value {
    json!({
        "resourceType": "Patient",
        "identifier": [{"system": "urn:oid:1.2.36.146.595.217.0.1", "value": format!("MRN-{family}")}],
        "name": [{"family": family, "given": ["Ann"]}],
        "birthDate": "1984-02-29"
    })
}

async fn outcome(r: Response, status: u16) -> Value {
    assert_eq!(r.status(), status);
    assert_eq!(r.headers()["content-type"], "application/fhir+json");
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["resourceType"], "OperationOutcome", "{body}");
    body
}

#[tokio::test]
async fn crud_with_versions_etags_and_events() {
    let app = spawn_app().await;
    let key = app.org_key("org-a").await;
    let r = fhir(
        &app,
        &key,
        Method::POST,
        "/fhir/Patient",
        Some(patient("Smith")),
    )
    .await;
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers()["etag"], "W/\"1\"");
    let location = r.headers()["location"]
        .to_str()
        .expect("location")
        .to_string();
    let created: Value = r.json().await.expect("json");
    let id = created["id"].as_str().expect("id").to_string();
    assert_eq!(location, format!("/fhir/Patient/{id}/_history/1"));
    assert_eq!(created["meta"]["versionId"], "1");

    let read: Value = fhir(
        &app,
        &key,
        Method::GET,
        &format!("/fhir/Patient/{id}"),
        None,
    )
    .await
    .json()
    .await
    .expect("json");
    assert_eq!(read, created);

    let mut changed = created.clone();
    changed["name"][0]["family"] = json!("Smyth");
    let r = app
        .client
        .put(app.url(&format!("/fhir/Patient/{id}")))
        .bearer_auth(&key)
        .header("content-type", "application/fhir+json")
        .header("if-match", "W/\"1\"")
        .body(changed.to_string())
        .send()
        .await
        .expect("put");
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["etag"], "W/\"2\"");
    let stale = app
        .client
        .put(app.url(&format!("/fhir/Patient/{id}")))
        .bearer_auth(&key)
        .header("content-type", "application/fhir+json")
        .header("if-match", "W/\"1\"")
        .body(changed.to_string())
        .send()
        .await
        .expect("put");
    outcome(stale, 412).await;

    let v1: Value = fhir(
        &app,
        &key,
        Method::GET,
        &format!("/fhir/Patient/{id}/_history/1"),
        None,
    )
    .await
    .json()
    .await
    .expect("json");
    assert_eq!(v1["name"][0]["family"], "Smith");

    // PUT with a new id creates; Prefer: return=minimal answers without a body.
    let r = app
        .client
        .put(app.url("/fhir/Patient/chosen-id"))
        .bearer_auth(&key)
        .header("content-type", "application/fhir+json")
        .header("prefer", "return=minimal")
        .body(patient("Jones").to_string())
        .send()
        .await
        .expect("put");
    assert_eq!(r.status(), 201);
    assert!(r.text().await.expect("text").is_empty());

    assert_eq!(
        fhir(
            &app,
            &key,
            Method::DELETE,
            &format!("/fhir/Patient/{id}"),
            None
        )
        .await
        .status(),
        204
    );
    outcome(
        fhir(
            &app,
            &key,
            Method::GET,
            &format!("/fhir/Patient/{id}"),
            None,
        )
        .await,
        410,
    )
    .await;
    assert_eq!(
        fhir(
            &app,
            &key,
            Method::DELETE,
            &format!("/fhir/Patient/{id}"),
            None
        )
        .await
        .status(),
        204
    );
    outcome(
        fhir(&app, &key, Method::GET, "/fhir/Patient/never-was", None).await,
        404,
    )
    .await;
    outcome(
        fhir(&app, &key, Method::DELETE, "/fhir/Patient/never-was", None).await,
        404,
    )
    .await;

    // Each write is an event, in order, with the resource as data.
    let page = app
        .get_json(&key, "/api/events?eventType=fhir.*&order=asc")
        .await;
    let kinds: Vec<&str> = page["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["eventType"].as_str().expect("t"))
        .collect();
    assert_eq!(
        kinds,
        vec![
            "fhir.created",
            "fhir.updated",
            "fhir.created",
            "fhir.deleted"
        ]
    );
    let first = &page["events"][0];
    assert_eq!(first["resourceType"], "Patient");
    assert_eq!(first["resourceId"], id.as_str());
    assert_eq!(first["source"], "fhir-api");
    assert_eq!(first["data"], created);
    assert_eq!(
        page["events"][3]["data"]["name"][0]["family"], "Smyth",
        "a delete carries the last version"
    );
}

#[tokio::test]
async fn malformed_requests_get_operation_outcomes_and_write_nothing() {
    let app = spawn_app().await;
    let key = app.org_key("org-a").await;
    let cases: Vec<(Method, &str, Option<Value>, u16)> = vec![
        (
            Method::POST,
            "/fhir/Patient",
            Some(json!({"resourceType": "Observation"})),
            400,
        ),
        (Method::POST, "/fhir/Patient", Some(json!([1, 2])), 400),
        (
            Method::POST,
            "/fhir/Patient",
            Some(json!({"name": []})),
            400,
        ),
        (
            Method::POST,
            "/fhir/Unicorn",
            Some(json!({"resourceType": "Unicorn"})),
            404,
        ),
        (
            Method::PUT,
            "/fhir/Patient/bad_id!",
            Some(patient("X")),
            400,
        ),
        (
            Method::PUT,
            "/fhir/Patient/p1",
            Some(json!({"resourceType": "Patient", "id": "p2"})),
            400,
        ),
        (Method::GET, "/fhir/Patient?colour=red", None, 400),
        (Method::GET, "/fhir/Patient?_count=0", None, 400),
        (Method::GET, "/fhir/Patient/p1/_history/one", None, 400),
    ];
    for (method, path, body, status) in cases {
        let r = fhir(&app, &key, method.clone(), path, body).await;
        let o = outcome(r, status).await;
        assert!(
            !o["issue"][0]["diagnostics"]
                .as_str()
                .expect("diagnostics")
                .is_empty(),
            "{method} {path}"
        );
    }
    let r = app
        .client
        .post(app.url("/fhir/Patient"))
        .bearer_auth(&key)
        .header("content-type", "application/fhir+json")
        .body("{\"resourceType\": \"Patient\",")
        .send()
        .await
        .expect("post");
    outcome(r, 400).await;
    let r = app
        .client
        .post(app.url("/fhir/Patient"))
        .bearer_auth(&key)
        .header("content-type", "text/plain")
        .body("x")
        .send()
        .await
        .expect("post");
    outcome(r, 415).await;
    outcome(
        app.client
            .get(app.url("/fhir/Patient/p1"))
            .send()
            .await
            .expect("get"),
        401,
    )
    .await;
    let page = app
        .get_json(&key, "/api/events?eventType=fhir.created,fhir.updated")
        .await;
    assert_eq!(
        page["events"].as_array().expect("events").len(),
        0,
        "nothing was written"
    );
}

#[tokio::test]
async fn search_pages_and_emits_a_searched_event() {
    let app = spawn_app().await;
    let key = app.org_key("org-a").await;
    for family in ["Adams", "Adamson", "Baker", "Carter", "Adair"] {
        assert_eq!(
            fhir(
                &app,
                &key,
                Method::POST,
                "/fhir/Patient",
                Some(patient(family))
            )
            .await
            .status(),
            201
        );
    }
    let bundle: Value = fhir(
        &app,
        &key,
        Method::GET,
        "/fhir/Patient?family=ada&_count=2",
        None,
    )
    .await
    .json()
    .await
    .expect("json");
    assert_eq!(bundle["resourceType"], "Bundle");
    assert_eq!(bundle["type"], "searchset");
    assert_eq!(bundle["total"], 3);
    assert_eq!(bundle["entry"].as_array().expect("entries").len(), 2);
    let next = bundle["link"]
        .as_array()
        .expect("links")
        .iter()
        .find(|l| l["relation"] == "next")
        .expect("next link");
    let next_url = next["url"].as_str().expect("url");
    let path = &next_url[next_url.find("/fhir/").expect("path")..];
    let second: Value = fhir(&app, &key, Method::GET, path, None)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(second["entry"].as_array().expect("entries").len(), 1);
    assert!(second["link"]
        .as_array()
        .expect("links")
        .iter()
        .all(|l| l["relation"] != "next"));

    let by_identifier: Value = fhir(
        &app,
        &key,
        Method::GET,
        "/fhir/Patient?identifier=urn:oid:1.2.36.146.595.217.0.1%7CMRN-Baker",
        None,
    )
    .await
    .json()
    .await
    .expect("json");
    assert_eq!(by_identifier["total"], 1);
    let by_birthdate: Value = fhir(
        &app,
        &key,
        Method::GET,
        "/fhir/Patient?birthdate=ge1984-01-01&given=ann",
        None,
    )
    .await
    .json()
    .await
    .expect("json");
    assert_eq!(by_birthdate["total"], 5);

    let searched = app
        .get_json(&key, "/api/events?eventType=fhir.searched")
        .await;
    let events = searched["events"].as_array().expect("events");
    assert_eq!(events.len(), 4);
    assert_eq!(events[3]["data"]["total"], 3);
    assert!(
        !searched.to_string().contains("\"Adams\""),
        "search events carry no resource bodies"
    );

    // A bare value matches whatever the system; `|value` only identifiers without one; `system|` is refused.
    for (query, total) in [
        ("identifier=MRN-Baker", 1),
        ("identifier=MRN-Bake", 0),
        ("identifier=%7CMRN-Baker", 0),
        ("identifier=urn:oid:1.2.36.146.595.217.0.2%7CMRN-Baker", 0),
        ("identifier=MRN-Baker,MRN-Nobody", 1),
    ] {
        let bundle: Value = fhir(
            &app,
            &key,
            Method::GET,
            &format!("/fhir/Patient?{query}"),
            None,
        )
        .await
        .json()
        .await
        .expect("json");
        assert_eq!(bundle["total"], total, "{query}");
    }
    let whole_system = fhir(
        &app,
        &key,
        Method::GET,
        "/fhir/Patient?identifier=urn:oid:1.2.36.146.595.217.0.1%7C",
        None,
    )
    .await;
    assert_eq!(whole_system.status(), 400);
}

#[tokio::test]
async fn orgs_never_see_each_others_resources() {
    let app = spawn_app().await;
    let a = app.org_key("org-a").await;
    let b = app.org_key("org-b").await;
    let r = fhir(
        &app,
        &a,
        Method::POST,
        "/fhir/Patient",
        Some(patient("Private")),
    )
    .await;
    let created: Value = r.json().await.expect("json");
    let id = created["id"].as_str().expect("id");
    outcome(
        fhir(&app, &b, Method::GET, &format!("/fhir/Patient/{id}"), None).await,
        404,
    )
    .await;
    outcome(
        fhir(
            &app,
            &b,
            Method::GET,
            &format!("/fhir/Patient/{id}/_history/1"),
            None,
        )
        .await,
        404,
    )
    .await;
    outcome(
        fhir(
            &app,
            &b,
            Method::DELETE,
            &format!("/fhir/Patient/{id}"),
            None,
        )
        .await,
        404,
    )
    .await;
    let search: Value = fhir(&app, &b, Method::GET, "/fhir/Patient?family=private", None)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(search["total"], 0);
    // A PUT by org-b with the same id creates org-b's own resource; org-a's is untouched.
    let r = fhir(
        &app,
        &b,
        Method::PUT,
        &format!("/fhir/Patient/{id}"),
        Some(patient("Mine")),
    )
    .await;
    assert_eq!(r.status(), 201);
    let still: Value = fhir(&app, &a, Method::GET, &format!("/fhir/Patient/{id}"), None)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(still["name"][0]["family"], "Private");
    // An admin key acts for an org named in a header.
    let r = app
        .client
        .get(app.url(&format!("/fhir/Patient/{id}")))
        .bearer_auth(&app.admin_token)
        .header("x-switchboard-org", "org-a")
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 200);
    outcome(
        app.client
            .get(app.url("/fhir/Patient/x"))
            .bearer_auth(&app.admin_token)
            .send()
            .await
            .expect("get"),
        400,
    )
    .await;
}

#[tokio::test]
async fn capability_statement_lists_what_works() {
    let app = spawn_app().await;
    let cs: Value = app
        .client
        .get(app.url("/fhir/metadata"))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(cs["resourceType"], "CapabilityStatement");
    assert_eq!(cs["fhirVersion"], "4.0.1");
    let resources = cs["rest"][0]["resource"].as_array().expect("resources");
    let patient = resources
        .iter()
        .find(|r| r["type"] == "Patient")
        .expect("Patient");
    let params: Vec<&str> = patient["searchParam"]
        .as_array()
        .expect("params")
        .iter()
        .map(|p| p["name"].as_str().expect("n"))
        .collect();
    assert_eq!(
        params,
        vec![
            "_id",
            "_lastUpdated",
            "identifier",
            "family",
            "given",
            "birthdate"
        ]
    );
}

#[tokio::test]
async fn the_fhirclient_python_package_interoperates() {
    let app = spawn_app().await;
    let key = app.org_key("org-a").await;
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/py/fhir_interop.py"
    );
    let base = app.url("/fhir");
    let output = tokio::process::Command::new("python3")
        .args([script, &base, &key])
        .output()
        .await
        .expect("run python3 (scripts/test.sh installs fhirclient)");
    assert!(
        output.status.success(),
        "fhirclient failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_slice(output.stdout.trim_ascii()).expect("json report");
    assert_eq!(report["family"], "Interop-Updated");
    assert_eq!(report["version"], "2");
    assert_eq!(report["found"], json!([report["id"]]));
    assert_eq!(report["bundle_total"], 1);
    assert_eq!(report["gone"], true);
    let events = app
        .get_json(&key, "/api/events?eventType=fhir.*&order=asc")
        .await;
    let kinds: Vec<&str> = events["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["eventType"].as_str().expect("t"))
        .collect();
    assert_eq!(
        kinds,
        vec![
            "fhir.created",
            "fhir.updated",
            "fhir.searched",
            "fhir.searched",
            "fhir.deleted"
        ]
    );
}

#[tokio::test]
async fn fhir_sync_forwards_writes_to_another_server() {
    let external = spawn_app().await;
    let external_key = external.org_key("mirror").await;
    let base = external.url("/fhir");
    let token = external_key.clone();
    let app = crate::helpers::spawn_app_with(move |c| {
        c.fhir_sync.base_url = base;
        c.fhir_sync.token = token;
        c.fhir_sync.resource_types = vec!["Patient".into()];
    })
    .await;
    let key = app.org_key("org-a").await;
    let created: Value = fhir(
        &app,
        &key,
        Method::POST,
        "/fhir/Patient",
        Some(patient("Synced")),
    )
    .await
    .json()
    .await
    .expect("json");
    let id = created["id"].as_str().expect("id").to_string();
    let path = format!("/fhir/Patient/{id}");
    let mut updated = created.clone();
    updated["name"][0]["family"] = json!("Synced-Again");
    assert_eq!(
        fhir(&app, &key, Method::PUT, &path, Some(updated))
            .await
            .status(),
        200
    );
    // Not on the allow list: never forwarded.
    fhir(
        &app,
        &key,
        Method::POST,
        "/fhir/Observation",
        Some(json!({"resourceType": "Observation", "status": "final"})),
    )
    .await;
    crate::helpers::eventually("the update reached the external server", || async {
        let r = fhir(&external, &external_key, Method::GET, &path, None).await;
        if r.status() != 200 {
            return false;
        }
        let body: Value = r.json().await.expect("json");
        body["name"][0]["family"] == "Synced-Again"
    })
    .await;
    let observations: Value = fhir(
        &external,
        &external_key,
        Method::GET,
        "/fhir/Observation",
        None,
    )
    .await
    .json()
    .await
    .expect("json");
    assert_eq!(observations["total"], 0);
    assert_eq!(
        fhir(&app, &key, Method::DELETE, &path, None).await.status(),
        204
    );
    crate::helpers::eventually("the delete reached the external server", || async {
        fhir(&external, &external_key, Method::GET, &path, None)
            .await
            .status()
            == 410
    })
    .await;
}

/// A body over `http.max_body_bytes` is an OperationOutcome (413, `too-long`) like every other FHIR error, not
/// axum's plain-text rejection (the OpenAPI document promises an OperationOutcome for every FHIR error).
#[tokio::test]
async fn oversized_body_is_an_operation_outcome() {
    let app = spawn_app_with(|c| {
        c.hub.max_event_bytes = 4096;
        c.http.max_body_bytes = 8192;
    })
    .await;
    let key = app.org_key("org-a").await;
    let mut big = patient("Big");
    big["text"] = json!({"status": "generated", "div": "x".repeat(10_000)});
    let r = fhir(&app, &key, Method::POST, "/fhir/Patient", Some(big.clone())).await;
    let body = outcome(r, 413).await;
    assert_eq!(body["issue"][0]["code"], "too-long");
    let r = fhir(&app, &key, Method::PUT, "/fhir/Patient/p1", Some(big)).await;
    outcome(r, 413).await;
}
