//! The attribute's compile-time behaviour: what it accepts compiles and runs (here,
//! without a pool), and each misuse is an error at the user's code. The `.stderr` files
//! hold the expected errors; `TRYBUILD=overwrite cargo test -p procpool-macros --test
//! compile` rewrites them after a deliberate change.

#[test]
fn accepted_functions_compile_and_call_here() {
    trybuild::TestCases::new().pass("tests/ui/pass/*.rs");
}

#[test]
fn misuse_is_an_error_at_the_user_s_code() {
    trybuild::TestCases::new().compile_fail("tests/ui/fail/*.rs");
}
