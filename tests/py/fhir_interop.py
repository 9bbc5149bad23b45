"""FHIR interop check with the independent `fhirclient` package (SMART on FHIR's Python client).

Usage: python3 fhir_interop.py BASE_URL API_KEY
Creates, reads, updates, searches and deletes a Patient through fhirclient's own models and HTTP layer, and
prints one JSON line with what it saw. Exits non-zero on any failure.
"""
import json
import sys

from fhirclient import client
from fhirclient.models.humanname import HumanName
from fhirclient.models.identifier import Identifier
from fhirclient.models.patient import Patient
from fhirclient.models.fhirdate import FHIRDate

base, key = sys.argv[1], sys.argv[2]
smart = client.FHIRClient(settings={"app_id": "switchboard-interop", "api_base": base})
smart.server.session.headers["Authorization"] = f"Bearer {key}"

patient = Patient()
name = HumanName()
name.family = "Interop"
name.given = ["Fhir", "Client"]
patient.name = [name]
ident = Identifier()
ident.system = "urn:oid:2.16.840.1.113883.19.5"
ident.value = "INTEROP-1"
patient.identifier = [ident]
patient.gender = "female"
patient.birthDate = FHIRDate("1990-07-04")

created = patient.create(smart.server)
new_id = created["id"]
read = Patient.read(new_id, smart.server)
assert read.name[0].family == "Interop", read.as_json()
assert read.meta.versionId == "1"

read.name[0].family = "Interop-Updated"
updated = read.update(smart.server)
again = Patient.read(new_id, smart.server)
assert again.meta.versionId == "2", again.as_json()

found = Patient.where(struct={"family": "interop"}).perform_resources(smart.server)
bundle = Patient.where(struct={"identifier": "urn:oid:2.16.840.1.113883.19.5|INTEROP-1"}).perform(smart.server)

again.delete(smart.server)
gone = None
try:
    Patient.read(new_id, smart.server)
except Exception as err:  # fhirclient raises on 410
    gone = str(err)

print(json.dumps({
    "id": new_id,
    "family": again.name[0].family,
    "version": again.meta.versionId,
    "found": [p.id for p in found],
    "bundle_total": bundle.total,
    "gone": gone is not None,
}))
