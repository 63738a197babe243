//! RPC metrics per method, as a jsonrpsee RPC middleware: every call (batched ones too) counts in
//! `damocles_rpc_calls_total`, its answer's error in `damocles_rpc_errors_total`, and its time in
//! `damocles_rpc_call_duration_seconds`.
//!
//! The label is the method name only for methods the server registered; any other name a client sends
//! collapses into [`OTHER`], so random names cannot grow the registry. The handles of every registered method
//! are created once, when the server starts ([`MethodTable`], kept for the life of the process: a server starts
//! once per process, so the leak is bounded); a call costs one hash lookup in an immutable map, two atomic adds
//! and one lock-free histogram observation.

use std::collections::HashMap;
use std::future::Future;
use std::time::Instant;

use jsonrpsee::MethodResponse;
use jsonrpsee::core::middleware::{Batch, BatchEntry, Notification, RpcServiceT};
use jsonrpsee::core::server::BatchResponseBuilder;
use jsonrpsee::types::Request;
use prometheus::{Histogram, IntCounter};

use super::Metrics;

/// The `method` label of every method the server does not register.
pub const OTHER: &str = "other";

/// The handles of one method label.
struct MethodMetrics {
    calls: IntCounter,
    errors: IntCounter,
    duration: Histogram,
}

impl MethodMetrics {
    fn new(metrics: &Metrics, label: &str) -> MethodMetrics {
        MethodMetrics {
            calls: metrics.rpc_calls.with_label_values(&[label]),
            errors: metrics.rpc_errors.with_label_values(&[label]),
            duration: metrics.rpc_duration.with_label_values(&[label]),
        }
    }

    fn record(&self, started: Instant, response: &MethodResponse) {
        self.calls.inc();
        if response.is_error() {
            self.errors.inc();
        }
        self.duration.observe(started.elapsed().as_secs_f64());
    }
}

/// The handles of every registered method, and of [`OTHER`]; immutable once built.
pub struct MethodTable {
    known: HashMap<&'static str, MethodMetrics>,
    other: MethodMetrics,
}

impl MethodTable {
    /// Handles for `methods` (the server's registered names) in `metrics`.
    pub fn new(metrics: &Metrics, methods: impl IntoIterator<Item = &'static str>) -> MethodTable {
        let known = methods.into_iter().map(|method| (method, MethodMetrics::new(metrics, method))).collect();
        MethodTable { known, other: MethodMetrics::new(metrics, OTHER) }
    }

    fn get(&'static self, method: &str) -> &'static MethodMetrics {
        self.known.get(method).unwrap_or(&self.other)
    }
}

/// The middleware layer (`RpcServiceBuilder::new().layer(..)`).
#[derive(Clone)]
pub struct RpcMetricsLayer {
    table: &'static MethodTable,
    /// For batches, which this layer runs call by call: the largest answer (`[API] MaxResponseBodyBytes`).
    max_response_bytes: usize,
}

impl RpcMetricsLayer {
    /// A layer counting into `table`; `max_response_bytes` bounds a batch's answer as the server does.
    pub fn new(table: MethodTable, max_response_bytes: usize) -> RpcMetricsLayer {
        RpcMetricsLayer { table: Box::leak(Box::new(table)), max_response_bytes }
    }
}

impl<S> tower::Layer<S> for RpcMetricsLayer {
    type Service = RpcMetricsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RpcMetricsService { inner, table: self.table, max_response_bytes: self.max_response_bytes }
    }
}

/// The middleware service around jsonrpsee's own.
#[derive(Clone)]
pub struct RpcMetricsService<S> {
    inner: S,
    table: &'static MethodTable,
    max_response_bytes: usize,
}

impl<S> RpcServiceT for RpcMetricsService<S>
where
    S: RpcServiceT<
            MethodResponse = MethodResponse,
            BatchResponse = MethodResponse,
            NotificationResponse = MethodResponse,
        > + Clone
        + Send
        + Sync
        + 'static,
{
    type MethodResponse = MethodResponse;
    type NotificationResponse = MethodResponse;
    type BatchResponse = MethodResponse;

    fn call<'a>(&self, request: Request<'a>) -> impl Future<Output = MethodResponse> + Send + 'a {
        let method = self.table.get(&request.method);
        let started = Instant::now();
        let answer = self.inner.call(request);
        async move {
            let response = answer.await;
            method.record(started, &response);
            response
        }
    }

    /// Runs the calls one by one through [`call`](Self::call), as jsonrpsee's own batch does, so each is counted.
    fn batch<'a>(&self, batch: Batch<'a>) -> impl Future<Output = MethodResponse> + Send + 'a {
        let service = self.clone();
        async move {
            let mut answers = BatchResponseBuilder::new_with_limit(service.max_response_bytes);
            let mut got_notification = false;
            for entry in batch {
                let response = match entry {
                    Ok(BatchEntry::Call(request)) => service.call(request).await,
                    Ok(BatchEntry::Notification(notification)) => {
                        got_notification = true;
                        service.notification(notification).await;
                        continue;
                    }
                    Err(err) => {
                        let (err, id) = err.into_parts();
                        MethodResponse::error(id, err)
                    }
                };
                if let Err(too_large) = answers.append(response) {
                    return too_large;
                }
            }
            if answers.is_empty() && got_notification {
                MethodResponse::notification()
            } else {
                MethodResponse::from_batch(answers.finish())
            }
        }
    }

    fn notification<'a>(&self, notification: Notification<'a>) -> impl Future<Output = MethodResponse> + Send + 'a {
        self.inner.notification(notification)
    }
}
