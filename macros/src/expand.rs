//! The code `#[procpool::task]` writes for a checked function.
//!
//! ```text
//! #[docs, cfg, deprecated, allow]  pub struct parse;      // what callers name
//! #[cfg] const _: () = {
//!     fn __procpool_task_parse(input: Input) -> Ret { body }   // the body, unchanged
//!     impl Deref for parse { Target = fn(Input) -> Ret }       // `parse(x)` still calls
//!     impl procpool::TaskFn for parse { NAME, Input, Output, options, run }
//!     procpool::register!(procpool::Call<parse>);
//! };
//! ```
//!
//! The types in the `TaskFn` impl carry the user's spans, so a type that cannot cross to
//! a worker is reported where it is written, once.

use proc_macro2::{Delimiter, Group, Span, TokenStream};
use quote::{format_ident, quote, quote_spanned, ToTokens};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{Attribute, ItemFn, Type};

use crate::options::{Options, Timeout};
use crate::signature::{Returns, Shape};

/// The items that replace `function`.
pub(crate) fn expand(function: ItemFn, shape: Shape, options: &Options) -> TokenStream {
    // `modifiers` hold only `default` (specialization), which a free function lacks.
    let ItemFn {
        attrs,
        vis,
        mut sig,
        block,
        ..
    } = function;
    let name = sig.ident.clone();
    let hidden = format_ident!("__procpool_task_{}", name.unraw(), span = name.span());
    sig.ident = hidden.clone();
    let for_struct: Vec<&Attribute> = attrs
        .iter()
        .filter(|a| {
            ["doc", "deprecated", "cfg", "allow"]
                .iter()
                .any(|n| a.path().is_ident(n))
        })
        .collect();
    let cfgs = attrs.iter().filter(|a| a.path().is_ident("cfg"));
    let for_body = attrs.iter().filter(|a| {
        !["doc", "deprecated", "cfg"]
            .iter()
            .any(|n| a.path().is_ident(n))
    });

    let args = &shape.args;
    let ret = match &sig.output {
        syn::ReturnType::Default => TokenStream::new(),
        syn::ReturnType::Type(arrow, ty) => quote!(#arrow #ty),
    };
    let task_name = match &options.name {
        Some(name) => name.to_token_stream(),
        None => {
            let plain = name.unraw().to_string();
            quote!(::core::concat!(::core::module_path!(), "::", #plain))
        }
    };
    let input = input_type(&shape, &sig);
    let (output, outcome) = output_and_outcome(&shape.returns, &hidden, args.len());
    let options_fn = options.has_settings().then(|| options_fn(options));

    quote! {
        #(#for_struct)*
        #[allow(non_camel_case_types)]
        #[derive(::core::clone::Clone, ::core::marker::Copy, ::core::fmt::Debug)]
        #vis struct #name;

        #(#cfgs)*
        #[allow(deprecated)]
        const _: () = {
            #(#for_body)*
            #sig #block

            impl ::core::ops::Deref for #name {
                type Target = fn(#(#args),*) #ret;

                fn deref(&self) -> &Self::Target {
                    const FUNCTION: fn(#(#args),*) #ret = #hidden;
                    &FUNCTION
                }
            }

            impl ::procpool::TaskFn for #name {
                const NAME: &'static str = #task_name;
                type Input = #input;
                type Output = #output;
                #options_fn

                fn run(
                    input: Self::Input,
                ) -> ::core::result::Result<Self::Output, ::procpool::BoxError> {
                    #outcome
                }
            }

            ::procpool::register!(::procpool::Call<#name>);
        };
    }
}

/// The task's input: the one argument's type, or a tuple of them spanning the written
/// argument list (so an argument that cannot be encoded is reported there).
fn input_type(shape: &Shape, sig: &syn::Signature) -> TokenStream {
    match shape.args.as_slice() {
        [one] => one.to_token_stream(),
        args => {
            let mut tuple = Group::new(Delimiter::Parenthesis, quote!(#(#args,)*));
            tuple.set_span(sig.paren_token.span.join());
            tuple.into_token_stream()
        }
    }
}

/// The task's `Output` type, and the body of `run` that calls `hidden` with the
/// input's `arity` parts and makes its result the outcome.
fn output_and_outcome(
    returns: &Returns,
    hidden: &syn::Ident,
    arity: usize,
) -> (TokenStream, TokenStream) {
    let parts: Vec<_> = (0..arity)
        .map(|i| format_ident!("arg{i}", span = Span::mixed_site()))
        .collect();
    let input = syn::Ident::new("input", Span::call_site());
    let call = match arity {
        1 => quote!(#hidden(#input)),
        _ => quote!({
            let (#(#parts,)*) = #input;
            #hidden(#(#parts),*)
        }),
    };
    match returns {
        Returns::Unit => (quote!(()), quote!(::core::result::Result::Ok(#call))),
        Returns::Plain(ty) => (
            ty.to_token_stream(),
            quote!(::core::result::Result::Ok(#call)),
        ),
        Returns::Fallible { ty, ok, err } => {
            // Spanned at the error type, or the return type where it is not written: an
            // error that does not convert into a `BoxError` is reported there.
            let at = err.as_ref().map_or_else(|| ty.span(), Spanned::span);
            let outcome = quote_spanned!(at=>
                <#ty as ::procpool::__private::TaskResult>::into_outcome(#call)
            );
            let output = match ok {
                Some(ok) => ok.to_token_stream(),
                None => fallible_ok(ty),
            };
            (output, outcome)
        }
    }
}

/// The `Ok` type of a `Result` whose type arguments are not written out.
fn fallible_ok(ty: &Type) -> TokenStream {
    quote_spanned!(ty.span()=> <#ty as ::procpool::__private::TaskResult>::Ok)
}

/// `TaskFn::options`, returning the settings the attribute gave.
fn options_fn(options: &Options) -> TokenStream {
    let timeout = options.timeout.as_ref().map(|timeout| match timeout {
        Timeout::Limit(limit) => {
            let millis = limit.as_millis() as u64;
            quote!(.timeout(::core::time::Duration::from_millis(#millis)))
        }
        Timeout::Unlimited => quote!(.no_timeout()),
    });
    let retries = options.retries.map(|n| quote!(.retries(#n)));
    quote! {
        fn options() -> ::procpool::TaskOptions {
            ::procpool::TaskOptions::new() #timeout #retries
        }
    }
}
