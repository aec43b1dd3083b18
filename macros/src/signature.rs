//! What a task function's signature may be, and what it means: the argument types
//! (the task's input) and the return type (its output, or a `Result` of it). Every
//! refusal is an error on the span of what is refused.

use proc_macro2::{TokenStream, TokenTree};
use quote::ToTokens;
use syn::{FnArg, GenericArgument, PathArguments, ReturnType, Safety, Signature, Type};

/// A task function's signature, checked.
pub(crate) struct Shape {
    /// The argument types, in order.
    pub(crate) args: Vec<Type>,
    pub(crate) returns: Returns,
}

/// What the function returns.
#[expect(
    clippy::large_enum_variant,
    reason = "one value per use of the attribute, read once"
)]
pub(crate) enum Returns {
    /// Nothing: the output is `()`.
    Unit,
    /// A value, the output itself.
    Plain(Type),
    /// A type spelled `Result<..>` (any path ending in `Result`): its `Ok` is the output
    /// and its `Err` the task's failure. `ok` and `err` are its type arguments where
    /// they are written out.
    Fallible {
        ty: Type,
        ok: Option<Type>,
        err: Option<Type>,
    },
}

impl Shape {
    /// Checks `sig` and reads it; the errors name every refused part, each at its span.
    pub(crate) fn of(sig: &Signature) -> syn::Result<Shape> {
        let mut errors = Errors::default();
        if let Some(token) = &sig.asyncness {
            errors.add(
                token,
                "a task function cannot be `async`: a worker runs it to the end on a thread of \
                 its own; make it a plain `fn` (it may block on a runtime of its own inside)",
            );
        }
        if let Safety::Unsafe(token) = &sig.safety {
            errors.add(
                token,
                "a task function cannot be `unsafe`: the pool calls it and cannot uphold its \
                 safety conditions",
            );
        }
        if let Some(abi) = &sig.abi {
            errors.add(abi, "a task function cannot have an `extern` ABI");
        }
        if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
            errors.add(
                &sig.generics,
                "a task function cannot be generic: a worker finds it by one name, which \
                 cannot stand for several instantiations; write a function per type, or \
                 implement `procpool::Task` for a generic struct and register each \
                 instantiation",
            );
        }
        if let Some(variadic) = &sig.variadic {
            errors.add(variadic, "a task function cannot be variadic");
        }
        let mut args = Vec::new();
        for input in &sig.inputs {
            match input {
                FnArg::Receiver(receiver) => errors.add(
                    receiver,
                    "a task function cannot take `self`: it runs in another process with its \
                     arguments alone; make it a free function",
                ),
                FnArg::Typed(typed) => {
                    check_owned(&typed.ty, "argument", &mut errors);
                    args.push((*typed.ty).clone());
                }
            }
        }
        let returns = match &sig.output {
            ReturnType::Default => Returns::Unit,
            ReturnType::Type(_, ty) => {
                check_owned(ty, "result", &mut errors);
                returns(ty)
            }
        };
        errors.finish()?;
        Ok(Shape { args, returns })
    }
}

/// Refuses a type that cannot cross to a worker as it is written: a reference, or an
/// `impl Trait` anywhere in it.
fn check_owned(ty: &Type, what: &str, errors: &mut Errors) {
    if let Type::Reference(reference) = ty {
        errors.add(
            reference,
            format!(
                "a task function's {what} crosses between processes, so it cannot be a \
                 reference: use an owned type (`String` for `&str`, `Vec<T>` for `&[T]`)"
            ),
        );
    } else if has_impl(ty.to_token_stream()) {
        errors.add(
            ty,
            format!(
                "a task function's {what} cannot be `impl Trait`: the worker decodes one \
                 concrete type; name it"
            ),
        );
    }
}

/// Whether the tokens hold the keyword `impl`, at any depth.
fn has_impl(tokens: TokenStream) -> bool {
    tokens.into_iter().any(|token| match token {
        TokenTree::Ident(ident) => ident == "impl",
        TokenTree::Group(group) => has_impl(group.stream()),
        _ => false,
    })
}

/// What a return type `ty` means (see [`Returns`]).
fn returns(ty: &Type) -> Returns {
    let Type::Path(path) = ty else {
        return Returns::Plain(ty.clone());
    };
    let Some(last) = path.path.segments.last() else {
        return Returns::Plain(ty.clone());
    };
    if path.qself.is_some() || last.ident != "Result" {
        return Returns::Plain(ty.clone());
    }
    let mut written = Vec::new();
    if let PathArguments::AngleBracketed(arguments) = &last.arguments {
        for argument in &arguments.args {
            if let GenericArgument::Type(ty) = argument {
                written.push(ty.clone());
            }
        }
    }
    let mut written = written.into_iter();
    Returns::Fallible {
        ty: ty.clone(),
        ok: written.next(),
        err: written.next(),
    }
}

/// Errors gathered so that one compile shows them all.
#[derive(Default)]
struct Errors(Option<syn::Error>);

impl Errors {
    /// An error over all of `at`'s tokens.
    fn add(&mut self, at: &impl ToTokens, message: impl std::fmt::Display) {
        let error = syn::Error::new_spanned(at, message);
        match &mut self.0 {
            Some(errors) => errors.combine(error),
            None => self.0 = Some(error),
        }
    }

    fn finish(self) -> syn::Result<()> {
        self.0.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(source: &str) -> syn::Result<Shape> {
        let item: syn::ItemFn = syn::parse_str(source).unwrap();
        Shape::of(&item.sig)
    }

    fn refused(source: &str) -> String {
        match shape(source) {
            Ok(_) => panic!("{source} was accepted"),
            Err(errors) => errors
                .into_iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("\n"),
        }
    }

    #[test]
    fn arguments_are_the_input_in_order() {
        let s = shape("fn f(a: u32, (b, c): (String, u8)) -> u64 { 0 }").unwrap();
        assert_eq!(s.args.len(), 2);
        assert_eq!(s.args[1].to_token_stream().to_string(), "(String , u8)");
        assert!(matches!(s.returns, Returns::Plain(_)));
        assert!(shape("fn f() {}").unwrap().args.is_empty());
        assert!(matches!(shape("fn f() {}").unwrap().returns, Returns::Unit));
    }

    #[test]
    fn a_return_type_spelled_result_is_fallible() {
        let written = |source: &str| match shape(source).unwrap().returns {
            Returns::Fallible { ok, err, .. } => (ok.is_some(), err.is_some()),
            _ => panic!("{source}: not fallible"),
        };
        assert_eq!(written("fn f() -> Result<u8, E> { 0 }"), (true, true));
        assert_eq!(
            written("fn f() -> std::result::Result<u8, E> { 0 }"),
            (true, true)
        );
        assert_eq!(written("fn f() -> anyhow::Result<u8> { 0 }"), (true, false));
        assert_eq!(written("fn f() -> io::Result<()> { 0 }"), (true, false));
        assert!(matches!(
            shape("fn f() -> Results<u8> { 0 }").unwrap().returns,
            Returns::Plain(_)
        ));
        assert!(matches!(
            shape("fn f() -> Option<Result<u8, E>> { 0 }")
                .unwrap()
                .returns,
            Returns::Plain(_)
        ));
    }

    #[test]
    fn every_refusal_is_reported_at_once() {
        let all =
            refused("async unsafe fn f<T>(&self, x: &str, y: Vec<impl Copy>) -> impl Copy {}");
        for part in [
            "`async`",
            "`unsafe`",
            "generic",
            "`self`",
            "reference",
            "`impl Trait`",
        ] {
            assert!(all.contains(part), "{part} not in {all}");
        }
        assert_eq!(all.lines().count(), 7, "{all}");
        assert!(refused("fn f() where u8: Copy {}").contains("generic"));
        assert!(refused("fn f() -> &'static str {}").contains("result"));
        assert!(refused(r#"extern "C" fn f() {}"#).contains("ABI"));
    }
}
