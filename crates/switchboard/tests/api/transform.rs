//! HL7 → FHIR: the transformer and the task creator, end to end through the event log.

use crate::helpers::{eventually, spawn_app, TestApp};
use serde_json::{json, Value};

fn sample(name: &str) -> String {
    let path = format!(
        "{}/../switchboard-hl7/tests/data/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    String::from_utf8(std::fs::read(path).expect("sample")).expect("utf-8 sample")
}

async fn receive(
    app: &TestApp,
    key: &str,
    raw: &str,
    message_type: &str,
    control_id: &str,
) -> Value {
    let r = app
        .publish(
            key,
            &json!({"eventType": "hl7.received", "messageType": message_type, "messageControlId": control_id, "data": {"raw": raw}}),
        )
        .await;
    assert_eq!(r.status(), 201);
    r.json().await.expect("json")
}

async fn events(app: &TestApp, key: &str, filter: &str) -> Vec<Value> {
    let page = app
        .get_json(key, &format!("/api/events?order=asc&limit=1000&{filter}"))
        .await;
    page["events"].as_array().expect("events").clone()
}

#[tokio::test]
async fn adt_a01_becomes_patient_and_encounter_in_order() {
    let app = spawn_app().await;
    let key = app.org_key("org-a").await;
    let received = receive(&app, &key, &sample("adt_a01.hl7"), "ADT^A01", "MSG00001").await;
    eventually("transform.completed", || async {
        !events(&app, &key, "eventType=transform.completed")
            .await
            .is_empty()
    })
    .await;

    let all = events(&app, &key, "").await;
    let kinds: Vec<&str> = all
        .iter()
        .map(|e| e["eventType"].as_str().expect("type"))
        .collect();
    let pos = |k: &str| kinds.iter().position(|x| *x == k).expect(k);
    assert!(pos("hl7.received") < pos("transform.started"));
    assert!(pos("transform.started") < pos("fhir.created"));
    assert!(
        kinds
            .iter()
            .rposition(|x| *x == "fhir.created")
            .expect("created")
            < pos("transform.completed")
    );
    let completed = &all[pos("transform.completed")];
    assert_eq!(completed["data"]["eventId"], received["id"]);
    assert_eq!(completed["messageControlId"], "MSG00001");
    let written: Vec<String> = completed["data"]["resources"]
        .as_array()
        .expect("ids")
        .iter()
        .map(|v| v.as_str().expect("s").to_string())
        .collect();
    assert_eq!(written.len(), 2);

    let patient: Value = app
        .get(&key, &format!("/fhir/{}", written[0]))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(patient["resourceType"], "Patient");
    assert_eq!(patient["name"][0]["family"], "DOE");
    assert_eq!(patient["gender"], "male");
    let encounter: Value = app
        .get(&key, &format!("/fhir/{}", written[1]))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(encounter["resourceType"], "Encounter");
    assert_eq!(encounter["subject"]["reference"], written[0]);

    // The same message again updates the same resources: no duplicates.
    receive(&app, &key, &sample("adt_a01.hl7"), "ADT^A01", "MSG00001").await;
    eventually("second transform", || async {
        events(&app, &key, "eventType=transform.completed")
            .await
            .len()
            == 2
    })
    .await;
    let bundle: Value = app
        .get(&key, "/fhir/Patient?identifier=12345")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(bundle["total"], 1);
    let patient: Value = app
        .get(&key, &format!("/fhir/{}", written[0]))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(patient["meta"]["versionId"], "2");
    let bundle: Value = app
        .get(&key, "/fhir/Encounter?identifier=V00012345")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(bundle["total"], 1, "the visit is one Encounter");
    assert_eq!(
        bundle["entry"][0]["resource"]["meta"]["versionId"], "2",
        "found by its visit number and updated"
    );
    assert_eq!(
        format!(
            "Encounter/{}",
            bundle["entry"][0]["resource"]["id"].as_str().expect("id")
        ),
        written[1]
    );
}

#[tokio::test]
async fn oru_r01_becomes_observations_with_values_and_units() {
    let app = spawn_app().await;
    let key = app.org_key("org-a").await;
    receive(
        &app,
        &key,
        &sample("oru_r01.hl7"),
        "ORU^R01",
        "LAB20240315-0007",
    )
    .await;
    eventually("transform.completed", || async {
        !events(&app, &key, "eventType=transform.completed")
            .await
            .is_empty()
    })
    .await;
    let completed = events(&app, &key, "eventType=transform.completed").await;
    let patient_ref = completed[0]["data"]["resources"][0]
        .as_str()
        .expect("patient")
        .to_string();
    let bundle: Value = app
        .get(
            &key,
            &format!("/fhir/Observation?patient={patient_ref}&_count=10"),
        )
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(bundle["total"], 4);
    let observations: Vec<&Value> = bundle["entry"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| &e["resource"])
        .collect();
    let glucose = observations
        .iter()
        .find(|o| o["code"]["coding"][0]["code"] == "2345-7")
        .expect("glucose");
    assert_eq!(glucose["valueQuantity"]["value"], 182.0);
    assert_eq!(glucose["valueQuantity"]["unit"], "mg/dL");
    assert_eq!(
        glucose["valueQuantity"]["system"],
        "http://unitsofmeasure.org"
    );
    assert_eq!(glucose["interpretation"][0]["coding"][0]["code"], "H");
    let color = observations
        .iter()
        .find(|o| o["code"]["coding"][0]["code"] == "5778-6")
        .expect("color");
    assert_eq!(
        color["valueCodeableConcept"]["coding"][0]["code"],
        "371244009"
    );
}

#[tokio::test]
async fn failures_become_tasks() {
    let app = spawn_app().await;
    let key = app.org_key("org-a").await;
    let orm = receive(&app, &key, &sample("orm_o01.hl7"), "ORM^O01", "ORM-1").await;
    let broken = app
        .publish(&key, &json!({"eventType": "hl7.error", "messageType": "ADT^A01", "data": {"reason": "MSH-12 version 9.9 is not supported"}}))
        .await;
    assert_eq!(broken.status(), 201);
    eventually("two tasks", || async {
        let bundle: Value = app
            .get(&key, "/fhir/Task")
            .await
            .json()
            .await
            .expect("json");
        bundle["total"] == 2
    })
    .await;
    let failed = events(&app, &key, "eventType=transform.failed").await;
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["data"]["eventId"], orm["id"]);
    assert!(failed[0]["data"]["reason"]
        .as_str()
        .expect("reason")
        .contains("unsupported"));
    let bundle: Value = app
        .get(&key, "/fhir/Task")
        .await
        .json()
        .await
        .expect("json");
    let descriptions: Vec<&str> = bundle["entry"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| e["resource"]["description"].as_str().expect("d"))
        .collect();
    assert!(
        descriptions.iter().any(|d| d.contains("version 9.9")),
        "{descriptions:?}"
    );
    assert!(
        descriptions
            .iter()
            .any(|d| d.starts_with("transform.failed (ORM^O01 ORM-1)")),
        "{descriptions:?}"
    );
    for entry in bundle["entry"].as_array().expect("entries") {
        assert_eq!(entry["resource"]["status"], "requested");
        assert_eq!(entry["resource"]["intent"], "order");
        assert_eq!(
            entry["resource"]["focus"]["identifier"]["system"],
            "urn:switchboard:event"
        );
    }
}

#[tokio::test]
async fn an_adt_over_mllp_becomes_fhir_resources_and_a_fhir_webhook() {
    use crate::webhooks::{allow_local, subscribe, TestReceiver};
    let app = crate::mllp::mllp_app(allow_local).await;
    let key = app.org_key(crate::mllp::ORG).await;
    let receiver = TestReceiver::start().await;
    subscribe(
        &app,
        &key,
        json!({"name": "new patients", "url": receiver.url("/patients"), "events": ["fhir.created"],
               "filters": {"resourceTypes": ["Patient"]}}),
    )
    .await;
    let mut peer = crate::mllp::Peer::connect(app.mllp()).await;
    peer.send(sample("adt_a01.hl7").as_bytes()).await;
    let ack = String::from_utf8_lossy(&peer.ack_bytes().await).to_string();
    assert!(ack.contains("MSA|AA|MSG00001"), "{ack}");

    let delivered = receiver
        .wait_for("/patients", 1, std::time::Duration::from_secs(20))
        .await;
    let event = delivered[0].json();
    assert_eq!(event["eventType"], "fhir.created");
    assert_eq!(event["resourceType"], "Patient");
    assert_eq!(event["data"]["name"][0]["family"], "DOE");
    let patient_path = format!(
        "/fhir/Patient/{}",
        event["resourceId"].as_str().expect("id")
    );
    let patient: Value = app
        .get(&key, &patient_path)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(patient["identifier"][0]["value"], "12345");
    // Only the Patient matched the subscription: the Encounter's fhir.created was filtered out.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(receiver.received_on("/patients").len(), 1);
    let kinds: Vec<String> = events(&app, &key, "")
        .await
        .iter()
        .map(|e| e["eventType"].as_str().expect("t").to_string())
        .collect();
    let pos = |k: &str| kinds.iter().position(|x| x == k).expect(k);
    assert!(pos("hl7.received") < pos("transform.started"));
    assert!(pos("transform.started") < pos("fhir.created"));
    assert!(pos("fhir.created") < pos("transform.completed"));
}

/// Messages of one handled group that name the same new patient and visit share one Patient and one Encounter (the
/// group resolves ids before it writes); the same identifiers in another org are another Patient and Encounter.
#[tokio::test]
async fn one_group_naming_a_new_patient_and_visit_twice_creates_each_once() {
    use switchboard::event::{EventType, NewEvent, Source};
    use switchboard::fhir::search::SearchQuery;
    use switchboard::hub::{DurableHandler, Hub, HubConfig};
    use switchboard::listeners::transformer::Transformer;

    let dir = tempfile::tempdir().expect("tempdir");
    let store = crate::helpers::open_store(&dir).await;
    let hub = Hub::start(store.clone(), HubConfig::default())
        .await
        .expect("hub");
    let raw = sample("adt_a01.hl7");
    let received = |org: &str, control: &str| {
        NewEvent::with_json(
            EventType::parse("hl7.received").expect("type"),
            org,
            Source::MllpServer,
            &json!({ "raw": raw.replace("MSG00001", control) }),
        )
        .expect("event")
        .message("ADT^A01", Some(control.to_string()))
    };
    let group = hub
        .emit_all(vec![
            received("org-a", "C1"),
            received("org-a", "C2"),
            received("org-b", "C3"),
        ])
        .await
        .expect("emit");
    let through = group.last().expect("events").seq;
    Transformer::new(hub.clone())
        .handle(&group, through)
        .await
        .expect("transform");

    for (resource_type, identifier) in [
        ("Patient", "urn:id:HOSP|12345"),
        ("Encounter", "urn:id:HOSP|V00012345"),
    ] {
        let query = SearchQuery::parse(
            resource_type,
            &[("identifier".to_string(), identifier.to_string())],
        )
        .expect("query");
        let mut ids = Vec::new();
        for org in ["org-a", "org-b"] {
            let page = store
                .search_resources(org, resource_type, &query)
                .await
                .expect("search");
            assert_eq!(page.total, 1, "one {resource_type} in {org}");
            let resource: Value = serde_json::from_str(&page.resources[0]).expect("json");
            assert_eq!(
                resource["meta"]["versionId"],
                if org == "org-a" { "2" } else { "1" },
                "org-a's two messages updated the {resource_type} the first created"
            );
            ids.push(resource["id"].as_str().expect("id").to_string());
        }
        assert_ne!(ids[0], ids[1], "{resource_type}s are per org");
    }
}
