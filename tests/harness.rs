//! Checks that keep the tests themselves honest.
