package telemetry

// Metric names. Every metric the codebase emits is named by one of these
// constants; the statsd client adds the "shoplab." namespace, so the full name
// in Datadog is "shoplab." + the constant. docs/metrics.md documents each one
// (type, tags, unit, meaning) and catalogue_test.go keeps the two in step.
// Packages add their own metrics here rather than passing string literals to
// the statsd client (a test rejects literals).
const (
	// MetricHTTPRequests counts served HTTP requests.
	// Tags: route, method, status_class.
	MetricHTTPRequests = "http.requests"
	// MetricHTTPRequestDuration is the distribution of HTTP request durations in
	// milliseconds. Tags: route, method, status_class.
	MetricHTTPRequestDuration = "http.request.duration"
	// MetricHTTPRateLimited counts requests refused with 429 by the
	// per-client rate limit. Tags: route, client_kind (buyer: a valid buyer
	// token's customer; admin: the admin token; addr: the client address,
	// when no credential proves who the client is).
	MetricHTTPRateLimited = "http.rate_limited"

	// MetricDBQueryDuration is the distribution of statement durations in
	// milliseconds. Tags: query, outcome.
	MetricDBQueryDuration = "db.query.duration"
	// MetricDBQueryErrors counts statements whose outcome is not ok.
	// Tags: query, outcome.
	MetricDBQueryErrors = "db.query.errors"
	// MetricDBLockWait is the distribution of the estimated lock wait, in
	// milliseconds, of statements flagged " lock". Tags: query, outcome.
	MetricDBLockWait = "db.lock_wait"
	// MetricDBLockWaitSampled is the distribution of how long sessions found
	// waiting for a lock by the sampler have waited so far, in milliseconds.
	// Tags: query, wait_event.
	MetricDBLockWaitSampled = "db.lock_wait.sampled"
	// MetricDBLocksWaiting is the gauge of the service's sessions waiting for a
	// lock at the last sample.
	MetricDBLocksWaiting = "db.locks.waiting"

	// MetricDBReplicaLagSeconds is the gauge of how far behind its primary
	// a standby that a pool reads is, in seconds (0 when it has replayed
	// everything it received while streaming). Tag: pool.
	MetricDBReplicaLagSeconds = "db.replica.lag_seconds"
	// MetricDBReplicaLagBytes is the gauge of the WAL a standby has received
	// but not yet replayed, in bytes. Tag: pool.
	MetricDBReplicaLagBytes = "db.replica.lag_bytes"
	// MetricDBReplicaStreaming is the gauge of whether a standby streams WAL
	// from its primary (1) or not (0: disconnected, reconnecting). Tag: pool.
	MetricDBReplicaStreaming = "db.replica.streaming"

	// MetricDBPoolAcquired is the gauge of connections checked out of the pool.
	// Tag: pool.
	MetricDBPoolAcquired = "db.pool.acquired"
	// MetricDBPoolIdle is the gauge of idle connections in the pool. Tag: pool.
	MetricDBPoolIdle = "db.pool.idle"
	// MetricDBPoolTotal is the gauge of all connections of the pool
	// (acquired + idle + being established). Tag: pool.
	MetricDBPoolTotal = "db.pool.total"
	// MetricDBPoolMax is the gauge of the pool's maximum size. Tag: pool.
	MetricDBPoolMax = "db.pool.max"
	// MetricDBPoolConstructing is the gauge of connections being established.
	// Tag: pool.
	MetricDBPoolConstructing = "db.pool.constructing"
	// MetricDBPoolAcquires counts successful acquires. Tag: pool.
	MetricDBPoolAcquires = "db.pool.acquires"
	// MetricDBPoolAcquireWait counts milliseconds spent in successful acquires
	// (divide by MetricDBPoolAcquires for the mean). Tag: pool.
	MetricDBPoolAcquireWait = "db.pool.acquire_wait"
	// MetricDBPoolEmptyAcquires counts acquires that found no idle connection
	// and had to wait for one to be released or established. Tag: pool.
	MetricDBPoolEmptyAcquires = "db.pool.empty_acquires"
	// MetricDBPoolEmptyAcquireWait counts milliseconds spent waiting by empty
	// acquires. Tag: pool.
	MetricDBPoolEmptyAcquireWait = "db.pool.empty_acquire_wait"
	// MetricDBPoolCanceledAcquires counts acquires abandoned because their
	// context ended. Tag: pool.
	MetricDBPoolCanceledAcquires = "db.pool.canceled_acquires"
	// MetricDBPoolNewConns counts connections opened by the pool. Tag: pool.
	MetricDBPoolNewConns = "db.pool.new_conns"
	// MetricDBPoolAcquireDuration is the distribution of individual acquire
	// durations in milliseconds, measured by the QueryTracer.
	// Tags: pool, outcome.
	MetricDBPoolAcquireDuration = "db.pool.acquire.duration"

	// MetricCheckoutOutcomes counts checkouts by outcome. Tag: outcome
	// (success, insufficient_stock, idempotent_replay, conflict, timeout,
	// rejected, canceled, error).
	MetricCheckoutOutcomes = "checkout.outcomes"
	// MetricCheckoutDuration is the distribution of checkout durations in
	// milliseconds, decoding to answer. Tag: outcome.
	MetricCheckoutDuration = "checkout.duration"
	// MetricCheckoutLockWait is the distribution of the time a checkout spent
	// in its row-locking statements (idempotency key claim, product lock), in
	// milliseconds. Tag: outcome.
	MetricCheckoutLockWait = "checkout.lock_wait"
	// MetricCheckoutPoolWait is the distribution of the time a checkout waited
	// for a database connection, in milliseconds. Tag: outcome.
	MetricCheckoutPoolWait = "checkout.pool_wait"
	// MetricCheckoutOrderItems is the distribution of units per placed order.
	MetricCheckoutOrderItems = "checkout.order.items"
	// MetricCheckoutOrderLines is the distribution of distinct products per
	// placed order.
	MetricCheckoutOrderLines = "checkout.order.lines"
	// MetricCheckoutOrderValue is the distribution of placed orders' totals in
	// currency units (dollars, not cents).
	MetricCheckoutOrderValue = "checkout.order.value"
	// MetricCheckoutStockOverwrites counts checkout lines whose stock write
	// replaced another value than the checkout had read: lost updates, only
	// possible with the unlocked-stock switch on.
	MetricCheckoutStockOverwrites = "checkout.stock.overwrites"
	// MetricCheckoutNegativeStockAttempts counts checkout lines sold with
	// less stock left than their quantity (a decrement would have gone below
	// zero): oversold lines, only possible with the unlocked-stock switch on.
	MetricCheckoutNegativeStockAttempts = "checkout.stock.negative_attempts"
	// MetricIdempotencyKeysExpired counts idempotency keys deleted after
	// expiry.
	MetricIdempotencyKeysExpired = "checkout.idempotency_keys.expired"
	// MetricImportRows counts the rows of bulk imports (POST
	// /admin/products/import) by what became of them: imported (created or
	// updated by SKU, in committed imports only) or rejected (invalid).
	// Tags: format, result.
	MetricImportRows = "import.rows"
	// MetricImportDuration is the distribution of bulk import durations in
	// milliseconds, from the first byte read to the answer. Tags: format,
	// outcome.
	MetricImportDuration = "import.duration"
	// MetricImportBytes is the distribution of the body bytes read by each
	// bulk import. Tags: format, outcome.
	MetricImportBytes = "import.bytes"
	// MetricImportsInFlight is the gauge of imports running, set at each
	// admission and completion.
	MetricImportsInFlight = "import.in_flight"
	// MetricImportRejections counts imports refused before reading their
	// body: 429 because IMPORTS_MAX_CONCURRENT were running (reason busy),
	// or 503 because the server is shutting down (reason shutting_down).
	MetricImportRejections = "import.rejected"
	// MetricImportCuts counts imports whose upload was cut mid-body, their
	// transaction rolled back: 408 for an upload idle longer than
	// UPLOAD_IDLE_TIMEOUT (reason idle) or slower than
	// UPLOAD_MIN_BYTES_PER_SEC (reason slow), 503 at shutdown (reason
	// shutdown).
	MetricImportCuts = "import.cut"
	// MetricProductsCreated counts products created through the API.
	// Tags: api_version (v1, v2), client (a ClientFamily value),
	// description (present, missing).
	MetricProductsCreated = "products.created"
	// MetricProductSearchDuration is the distribution of product search
	// durations in milliseconds, from validated query to rows read.
	// Tag: outcome (ok, unavailable, error, canceled).
	MetricProductSearchDuration = "products.search.duration"
	// MetricProductSearchResults is the distribution of the number of
	// products matching each successful search (all pages).
	// Tag: has_results (true, false).
	MetricProductSearchResults = "products.search.results"
	// MetricProductQueryRejected counts GET /products requests refused with
	// a 400 before reaching the database. Tag: reason (too_long,
	// invalid_utf8, nul, control_char, malformed_query, bad_paging).
	MetricProductQueryRejected = "products.query.rejected"
	// MetricReportDuration is the distribution of order-report durations in
	// milliseconds, from admission to the last byte written.
	// Tags: format (json, txt, csv, ndjson), outcome (ok, not_found,
	// canceled, unavailable, error).
	MetricReportDuration = "reports.duration"
	// MetricReportRows counts order lines streamed into reports.
	// Tag: format.
	MetricReportRows = "reports.rows"
	// MetricReportsInFlight is the gauge of reports running, set at each
	// admission and completion.
	MetricReportsInFlight = "reports.in_flight"
	// MetricReportRejections counts reports refused with 429 because the
	// concurrency limit was reached. Tag: format.
	MetricReportRejections = "reports.rejected"
	// MetricReportCancellations counts reports abandoned because the client
	// went away before the last byte. Tag: format.
	MetricReportCancellations = "reports.canceled"

	// MetricReportInProcessBytes is the distribution of the bytes a report
	// download held in memory before its first byte: only with the
	// report-in-process switch on. Tag: format.
	MetricReportInProcessBytes = "reports.in_process.bytes"

	// MetricSwitchesActive is the gauge, per chaos switch, of whether it is
	// on (1) or off (0), sent every 10 s. Tag: switch.
	MetricSwitchesActive = "switches.active"

	// MetricLogDropped counts log lines dropped by log sampling. Tag: level.
	MetricLogDropped = "log.dropped"

	// MetricOutboxPending is the gauge of outbox events not yet sent: order
	// confirmations owed, due now or waiting for a retry.
	MetricOutboxPending = "outbox.pending"
	// MetricOutboxOldestPendingAge is the gauge of the age, in seconds, of the
	// oldest pending outbox event (0 when none): the number to alert on.
	MetricOutboxOldestPendingAge = "outbox.oldest_pending_age"
	// MetricOutboxParked is the gauge of outbox events parked as dead, waiting
	// for `shopd outbox requeue-dead`.
	MetricOutboxParked = "outbox.parked"
	// MetricOutboxSent counts outbox events delivered and marked sent.
	MetricOutboxSent = "outbox.sent"
	// MetricOutboxRetried counts failed deliveries rescheduled with backoff.
	// Tag: reason.
	MetricOutboxRetried = "outbox.retried"
	// MetricOutboxDead counts outbox events parked as dead. Tag: reason.
	MetricOutboxDead = "outbox.dead"
	// MetricOutboxLeaseLost counts deliveries whose result could not be
	// recorded because their claim had expired and another relay had claimed
	// the event: a possible duplicate mail.
	MetricOutboxLeaseLost = "outbox.lease_lost"
	// MetricMailSMTPDuration is the distribution of SMTP send durations in
	// milliseconds (connect to accepted message). Tag: outcome.
	MetricMailSMTPDuration = "mail.smtp.duration"
)
