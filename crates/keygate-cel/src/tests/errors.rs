use super::Fixture;
use crate::{Compiler, MAX_DEPTH, MAX_NESTING, MAX_OPERATORS, MAX_SOURCE_LEN};

/// Runs `f` on a thread with a tokio-worker-sized stack (2 MiB).
fn on_small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .stack_size(2 * 1024 * 1024)
        .spawn(f)
        .unwrap()
        .join()
        .unwrap()
}

#[test]
fn garbage_is_a_compile_error_with_an_offset() {
    let compiler = Compiler::new();
    for source in [
        "",
        "(",
        "1 +",
        "a.b(",
        "req.headers['x'",
        "'unterminated",
        "}{",
        "a b",
        "1 ==== 2",
    ] {
        let err = compiler.expression(source).unwrap_err();
        assert!(!err.message.is_empty(), "{source}");
    }
    let err = compiler.expression("req.method == == 'GET'").unwrap_err();
    assert_eq!(err.offset, Some(14), "{err:?}");
}

#[test]
fn wrong_arity_of_rewritten_helpers_is_a_compile_error() {
    let compiler = Compiler::new();
    for source in [
        "getReqHeader()",
        "hasReqHeader('a', 'b')",
        "secrets.get('v')",
        "'a'.matches()",
    ] {
        assert!(compiler.expression(source).is_err(), "{source}");
    }
}

#[test]
fn huge_sources_are_rejected() {
    let compiler = Compiler::new();
    let huge = format!("'{}' == 'x'", "a".repeat(MAX_SOURCE_LEN));
    let err = compiler.expression(&huge).unwrap_err();
    assert!(err.message.contains("limit"), "{err}");
}

#[test]
fn deep_nesting_is_rejected_before_parsing() {
    on_small_stack(|| {
        let compiler = Compiler::new();
        for depth in [MAX_NESTING + 1, 1000, 8000] {
            for (open, close) in [("(", ")"), ("[", "]"), ("{'a':", "}")] {
                let source = format!("{}1{}", open.repeat(depth), close.repeat(depth));
                let err = compiler.expression(&source).unwrap_err();
                assert!(
                    err.message.contains("nested") || err.message.contains("limit"),
                    "{err}"
                );
            }
            let source = format!("{}true", "!".repeat(depth));
            assert!(compiler.expression(&source).is_err());
            let source = format!("{}1", "-".repeat(depth));
            assert!(compiler.expression(&source).is_err());
        }
    });
}

/// Expressions at the limits evaluate on a tokio-worker-sized stack (2 MiB) in release
/// builds; unoptimised test builds use far bigger frames, so they get 16 MiB.
#[test]
fn expressions_at_the_limits_compile_and_run() {
    let stack = if cfg!(debug_assertions) { 16 } else { 2 } * 1024 * 1024;
    let run = move || {
        let fx = Fixture::new(&[]);
        let depth = MAX_NESTING - 1;
        let nested = format!("{}1{} == 1", "(".repeat(depth), ")".repeat(depth));
        assert!(fx.truth(&nested));
        let lists = format!(
            "size({}1{}) == 1",
            "[".repeat(depth - 2),
            "]".repeat(depth - 2)
        );
        assert!(fx.truth(&lists));
        let chain = format!(
            "{} == {}",
            vec!["1"; MAX_DEPTH - 5].join(" + "),
            MAX_DEPTH - 5
        );
        assert!(fx.truth(&chain));
        let conditions = vec!["req.method == 'POST'"; MAX_DEPTH / 2].join(" && ");
        assert!(fx.truth(&conditions));
        let too_deep = vec!["1"; MAX_DEPTH + 5].join(" + ");
        let err = fx.compiler.expression(&too_deep).unwrap_err();
        assert!(err.message.contains("nested"), "{err}");
        let too_many = vec!["1"; MAX_OPERATORS + 10].join("+");
        let err = fx.compiler.expression(&too_many).unwrap_err();
        assert!(err.message.contains("operators"), "{err}");
    };
    std::thread::Builder::new()
        .stack_size(stack)
        .spawn(run)
        .unwrap()
        .join()
        .unwrap();
}

#[test]
fn strings_do_not_count_towards_nesting() {
    let compiler = Compiler::new();
    let source = format!("'{}' != ''", "((((".repeat(40));
    assert!(compiler.expression(&source).is_ok());
}

#[test]
fn eval_bool_requires_a_bool() {
    let fx = Fixture::new(&[]);
    let expression = fx.compiler.expression("'x'").unwrap();
    let err = expression.eval_bool(&fx.scope()).unwrap_err();
    assert!(err.message.contains("bool"), "{err}");
}

#[test]
fn runtime_errors_are_clear() {
    let fx = Fixture::new(&[]);
    assert!(fx.error("1 / 0 == 1").contains("division by zero"));
    // An unknown variable is a compile error now (see tests/check.rs); a comprehension
    // variable used outside its comprehension is the same mistake.
    assert!(Compiler::new()
        .expression("unknown_var == 1")
        .is_err_and(|e| e.message.contains("unknown_var")));
    assert!(fx.error("'a' + 1 == 'a1'").contains("string"));
    assert!(fx.error("{'a': 1}.b == 1").contains("'b'"));
    assert!(fx.error("int('abc') == 1").contains("int"));
}
