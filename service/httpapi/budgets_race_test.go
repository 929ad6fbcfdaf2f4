//go:build race

package httpapi_test

// raceSuffix marks the allocation budgets measured under the race
// detector (make test), which allocate differently: sync.Pool drops
// items at random and the detector instruments the heap.
const raceSuffix = " (-race)"
