//! Per-request context available anywhere while a request is being handled: its id and the
//! language its messages are written in.

use celaest_protocol::Lang;

/// The request's id, shared with the edge's request context.
pub use celaest_net::http::context::RequestId;

tokio::task_local! {
    static LANG: Lang;
}

/// Runs `fut` with `lang` as the language of every message it renders.
pub async fn with_lang<F: Future>(lang: Lang, fut: F) -> F::Output {
    LANG.scope(lang, fut).await
}

/// The language of the request being handled (Spanish outside a request).
pub fn current_lang() -> Lang {
    LANG.try_with(|l| *l).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_language_is_scoped_to_the_request() {
        assert_eq!(current_lang(), Lang::Es);
        assert_eq!(
            with_lang(Lang::En, async { current_lang() }).await,
            Lang::En
        );
    }
}
