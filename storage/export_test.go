package storage

// WithDB is exported for tests.
var WithDB = withDB
