//! A fake kube-apiserver that speaks the real list/watch protocol over plain HTTP, so
//! kube-rs clients and `kube::runtime::watcher` run against it unchanged while a test
//! scripts the cluster's history.
//!
//! # Model
//! One in-memory store of JSON objects keyed by resource (group, version, plural),
//! namespace and name. Every write takes the next value of one cluster-wide
//! resourceVersion counter (`metadata.resourceVersion`, a decimal string), and appends an
//! ADDED / MODIFIED / DELETED event (the object as it was written; a DELETED object carries
//! the deletion's resourceVersion) to the history. On create `metadata.uid` is assigned if
//! absent, `metadata.creationTimestamp` is kept if given else set to now, and
//! `metadata.generation` starts at 1 (kept if given); a replace keeps uid and
//! creationTimestamp and bumps generation when anything outside `metadata`/`status` changed.
//!
//! # URLs
//! Core `/api/v1/{plural}`, `/api/v1/{plural}/{name}` (cluster-scoped),
//! `/api/v1/namespaces/{ns}/{plural}[/{name}[/{subresource}]]`; groups the same under
//! `/apis/{group}/{version}/…`. Any plural is accepted; list `kind` comes from the kind table
//! (`PodList`), `List` for plurals it does not know. `GET /version` answers a v1.34 version.
//!
//! - **list** (GET collection): `labelSelector` (`a=b`, `a==b`, `a!=b`, `a`, `!a`,
//!   `a in (x,y)`, `a notin (x,y)`), `fieldSelector` (any dotted path, `=`/`==`/`!=`; a
//!   missing field reads as ""), `limit` + `continue` (a token pins the first page's
//!   resourceVersion and later pages are served from that snapshot; 410 when compacted
//!   past), `resourceVersionMatch=Exact` (snapshot at that rv), other `resourceVersion`s
//!   serve the current state. Items are in (namespace, name) order.
//! - **watch** (GET collection with `watch=1|true`): a chunked `application/json` body, one
//!   `{"type":…,"object":…}` per line. `resourceVersion=N` replays every history event after
//!   N, then live events; N older than the last [`FakeApiServer::compact`] gets a single
//!   `ERROR` event (`Status` 410 `Expired`, "too old resource version: N (M)") and the stream
//!   ends, as the real server does. No `resourceVersion` or `"0"`: synthetic ADDED for the
//!   current objects, then live. `sendInitialEvents=true` adds the
//!   `k8s.io/initial-events-end` BOOKMARK after the initial ADDEDs (streaming lists).
//!   `allowWatchBookmarks=true`: a BOOKMARK with only `metadata.resourceVersion` every
//!   [`FakeApiOptions::bookmark_interval`]. `timeoutSeconds` ends the stream cleanly.
//!   Selectors apply as in the real watch cache: an update that moves an object into the
//!   selection arrives as ADDED, out of it as DELETED.
//! - **get**: 404 `Status` (`NotFound`) when missing.
//! - **create** (POST, 201; 409 `AlreadyExists`; `generateName` honoured), **update** (PUT;
//!   409 `Conflict` when `metadata.resourceVersion` is given and stale), **patch** (merge
//!   and strategic-merge patches both as RFC 7386 merge patches; server-side apply as a merge
//!   patch that creates when missing; JSON patch answers 415), **delete** (200 with the
//!   object). The `status` subresource reads and writes the same object (PUT/PATCH on it
//!   change only `status`).
//!
//! # Script API
//! [`FakeApiServer`] methods work while clients are connected: [`apply`](FakeApiServer::apply),
//! [`delete`](FakeApiServer::delete), [`get`](FakeApiServer::get),
//! [`compact`](FakeApiServer::compact), [`drop_watches`](FakeApiServer::drop_watches) (cut
//! every watch connection mid-stream), [`set_available`](FakeApiServer::set_available) (503
//! for everything; connections are still accepted), [`requests`](FakeApiServer::requests)
//! (verb/resource log for RBAC checks), [`watch_count`](FakeApiServer::watch_count) and
//! [`wait_until`](FakeApiServer::wait_until). [`fixtures`] builds objects in the shape the
//! real APIs return.
//!
//! # Not modelled
//! Authentication/authorization, admission and validation, defaulting, discovery (`/api`,
//! `/apis`), finalizers and graceful deletion (`deletionTimestamp`), field managers,
//! deletecollection, protobuf/CBOR/Table encodings, and per-resource limits on which fields a
//! field selector may use.

mod http;
mod selector;
mod server;
mod store;

pub mod fixtures;

#[cfg(test)]
mod tests;

pub use server::{FakeApiOptions, FakeApiServer, RequestRecord, Verb};
