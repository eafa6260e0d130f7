"""A STAND-IN for a schema registry, written for the tests: NOT a real registry.

No open-source schema registry could be started on this machine from the package
registries it reaches (Karapace is not on PyPI; Confluent's jars are not on Maven Central;
Apicurio Registry's application jar is, but not the modules it needs). This HTTP server
speaks the part of the Confluent Schema Registry REST API that confluent-kafka's
``SchemaRegistryClient``, ``AvroSerializer`` and ``AvroDeserializer`` and the pipeline
use: register (deduplicated by the schema's canonical form, ids global), look up by id,
latest version, per-subject compatibility (BACKWARD checked with the pipeline's
``backward_problems``, Apache Avro's checker) and the compatibility test. Errors carry the
registry's codes (40401 subject, 40403 schema, 409 incompatible).
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

import fastavro.schema

from pipeline.events.compatibility import backward_problems

_VERSIONS = re.compile(r"^/subjects/([^/]+)/versions$")
_VERSION = re.compile(r"^/subjects/([^/]+)/versions/([^/]+)$")
_SUBJECT = re.compile(r"^/subjects/([^/]+)$")
_CONFIG = re.compile(r"^/config/([^/]+)$")
_BY_ID = re.compile(r"^/schemas/ids/(\d+)$")
_COMPATIBILITY = re.compile(r"^/compatibility/subjects/([^/]+)/versions/([^/]+)$")


@dataclass
class _State:
    schemas: dict[int, str] = field(default_factory=dict)  # id -> schema text
    ids_by_form: dict[str, int] = field(default_factory=dict)  # canonical form -> id
    subjects: dict[str, list[int]] = field(default_factory=dict)  # subject -> ids by version
    compatibility: dict[str, str] = field(default_factory=dict)
    requests: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Refused(Exception):
    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _canonical(text: str) -> str:
    parsed = fastavro.parse_schema(json.loads(text), _write_hint=False, named_schemas={})
    return str(fastavro.schema.to_parsing_canonical_form(parsed))


class StandInRegistry:
    """``with StandInRegistry() as registry: registry.url``: a server on 127.0.0.1."""

    def __init__(self) -> None:
        self.state = _State()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> StandInRegistry:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    # --- the API ------------------------------------------------------------------------------

    def handle(self, method: str, path: str, body: dict[str, Any]) -> Any:
        state = self.state
        with state.lock:
            state.requests += 1
            if method == "PUT" and (m := _CONFIG.match(path)):
                level = str(body.get("compatibility", "")).upper()
                state.compatibility[unquote(m[1])] = level
                return {"compatibility": level}
            if method == "GET" and (m := _CONFIG.match(path)):
                return {"compatibilityLevel": state.compatibility.get(unquote(m[1]), "BACKWARD")}
            if method == "POST" and (m := _VERSIONS.match(path)):
                return {"id": self._register(unquote(m[1]), body)}
            if method == "GET" and (m := _BY_ID.match(path)):
                schema_id = int(m[1])
                if schema_id not in state.schemas:
                    raise _Refused(404, 40403, f"Schema {schema_id} not found")
                return {"schema": state.schemas[schema_id], "schemaType": "AVRO"}
            if method == "GET" and (m := _VERSION.match(path)):
                subject, version = unquote(m[1]), m[2]
                return self._version(subject, version)
            if method == "POST" and (m := _SUBJECT.match(path)):
                subject = unquote(m[1])
                form = _canonical(str(body["schema"]))
                schema_id = state.ids_by_form.get(form)
                versions = state.subjects.get(subject, [])
                if schema_id is None or schema_id not in versions:
                    raise _Refused(404, 40403, "Schema not found")
                return self._describe(subject, versions.index(schema_id) + 1)
            if method == "POST" and (m := _COMPATIBILITY.match(path)):
                subject, version = unquote(m[1]), m[2]
                old = self._version(subject, version)
                problems = backward_problems(
                    json.loads(old["schema"]), json.loads(str(body["schema"]))
                )
                return {"is_compatible": not problems, "messages": problems}
            raise _Refused(404, 404, f"no route {method} {path}")

    def _register(self, subject: str, body: dict[str, Any]) -> int:
        state = self.state
        text = str(body["schema"])
        if body.get("schemaType", "AVRO") != "AVRO" or body.get("references"):
            raise _Refused(422, 42201, "the stand-in keeps Avro schemas without references")
        try:
            form = _canonical(text)
        except Exception as exc:
            raise _Refused(422, 42201, f"Invalid schema: {exc}") from exc
        versions = state.subjects.setdefault(subject, [])
        known = state.ids_by_form.get(form)
        if known is not None and known in versions:
            return known
        if versions and state.compatibility.get(subject, "BACKWARD") == "BACKWARD":
            latest = json.loads(state.schemas[versions[-1]])
            problems = backward_problems(latest, json.loads(text))
            if problems:
                raise _Refused(
                    409,
                    409,
                    f"Schema being registered is incompatible with an earlier schema for "
                    f"subject {subject!r}: {'; '.join(problems)}",
                )
        if known is None:
            known = max(state.schemas, default=0) + 1
            state.schemas[known] = text
            state.ids_by_form[form] = known
        versions.append(known)
        return known

    def _version(self, subject: str, version: str) -> dict[str, Any]:
        versions = self.state.subjects.get(subject)
        if not versions:
            raise _Refused(404, 40401, f"Subject '{subject}' not found.")
        number = len(versions) if version == "latest" else int(version)
        if not 1 <= number <= len(versions):
            raise _Refused(404, 40402, f"Version {version} not found.")
        return self._describe(subject, number)

    def _describe(self, subject: str, version: int) -> dict[str, Any]:
        schema_id = self.state.subjects[subject][version - 1]
        return {
            "subject": subject,
            "version": version,
            "id": schema_id,
            "schema": self.state.schemas[schema_id],
        }

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        registry = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else {}
                    result = registry.handle(self.command, urlsplit(self.path).path, body)
                    status, payload = 200, result
                except _Refused as refused:
                    status = refused.status
                    payload = {"error_code": refused.code, "message": refused.message}
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = _serve

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler
