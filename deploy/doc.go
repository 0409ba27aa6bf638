// Package deploy checks the deployment examples beside it: the Kubernetes
// manifests in kubernetes/ are decoded strictly into the API server's own
// types (k8s.io/api), so a misspelt or misplaced field, a wrong type or a
// duplicated key fails the test as `kubectl apply --validate=strict` would,
// and then checked for what ties them together (selectors, probe ports,
// config and secret references, resources). See manifests_test.go.
package deploy
