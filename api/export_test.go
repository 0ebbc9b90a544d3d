package api

// Internals exported to the black-box tests in package api_test.
var DecodeArg = decodeArg
