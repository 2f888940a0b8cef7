import pytest

from reward import instructions
from reward.scorer import RewardSet, build_scorer
from tao.core.errors import InputError
from tao.core.specs import split_weight
from tao.core.types import Candidate, Message, Prompt
from tests import rewards as user_rewards


def cand(text, finished=True, ids=(1, 2, 3), pid="p"):
    return Candidate(pid, 0, text, tuple(ids), finished, "sample")


def prompt(text, system=None, **metadata):
    msgs = ((Message("system", system),) if system else ()) + (Message("user", text),)
    return Prompt("p", msgs, metadata)


def score(spec, text, user="q", finished=True):
    return build_scorer(spec).score([prompt(user)], [cand(text, finished)])[0]


def test_rules():
    assert score("rule:finished", "x", finished=True) == 1.0
    assert score("rule:finished", "x", finished=False) == 0.0
    assert score("rule:repetition", "one two three four five") == 1.0
    assert score("rule:repetition", "a b c d " * 10) < 0.15
    assert score("rule:length:4", "one two three") == 1.0
    assert score("rule:length:4", "one two three four five six seven eight") == 0.5
    assert score("rule:min_words:4", "one two") == 0.5 and score("rule:min_words:4", "a b c d e f") == 1.0
    assert score("rule:json", '```json\n{"a": [1, 2]}\n```') == 1.0
    assert score("rule:json", "{a: 1}") == 0.0
    assert score(r"rule:regex:^\d+$", "42") == 1.0 and score(r"rule:regex:^\d+$", "forty") == 0.0


@pytest.mark.parametrize(
    "kind, ask, good, bad",
    [
        ("punctuation:no_comma", "Answer without using any commas.", "yes it is true", "yes, it is"),
        (
            "change_case:english_lowercase",
            "Reply in all lowercase letters.",
            "the weather is very nice today and i am happy",
            "Not all small",
        ),
        (
            "change_case:english_capital",
            "Write it in all capital letters.",
            "THE WEATHER IS VERY NICE TODAY AND I AM HAPPY",
            "Quiet text",
        ),
        ("length_constraints:number_words", "Use at least 5 words.", "one two three four five", "one two"),
        (
            "length_constraints:number_words",
            "Answer in fewer than 4 words.",
            "just three words",
            "this has far too many words",
        ),
        ("tao:paragraphs", "Write exactly 2 paragraphs.", "first part\n\nsecond part", "only one block"),
        ("detectable_format:number_bullet_lists", "Give exactly 3 bullet points.", "* a\n* b\n* c", "* a\n* b"),
        ("detectable_format:json_format", "Wrap your entire output in JSON format.", '{"ok": true}', "ok: true"),
        (
            "startend:end_checker",
            'End your response with the exact phrase "See you."',
            "Bye now. See you.",
            "See you. Bye now.",
        ),
        ("tao:start_with", 'Start your answer with the word "Dear"', "Dear Sam, hi", "Hi Sam, dear"),
        ("startend:quotation", "Wrap your entire response with double quotation marks.", '"quoted"', "not quoted"),
        ("keywords:existence", 'Include the keywords "apple" and "pear".', "an apple and a pear", "an apple only"),
        ("keywords:forbidden_words", 'Do not use the words "very" or "really".', "it is great", "it is very great"),
        (
            "detectable_content:number_placeholders",
            "Include at least 2 placeholders like [name].",
            "hi [name] from [city]",
            "hi [name]",
        ),
        (
            "detectable_format:number_highlighted_sections",
            "Highlight at least 2 sections with markdown, i.e. *highlighted section*.",
            "*one* and *two*",
            "*one*",
        ),
        (
            "detectable_format:title",
            "Add a title wrapped in double angular brackets, such as <<poem>>.",
            "<<Rain>>\nit rains",
            "Rain",
        ),
        (
            "detectable_content:postscript",
            "At the end, add a postscript starting with P.S.",
            "Hello.\nP.S. bye",
            "Hello. bye",
        ),
        ("keywords:letter_frequency", "In your answer, the letter q should appear at least 3 times.", "qqq", "q"),
        ("length_constraints:number_sentences", "Answer in one sentence.", "It is blue.", "It is blue. It is nice."),
        ("length_constraints:number_words", "Write 5 or more words.", "a b c d e", "a b"),
        ("startend:quotation", "Put double quotes around your entire response.", '"hi there"', "hi there"),
        (
            "keywords:forbidden_words",
            "Do not include the following keywords: field, issue.",
            "all good",
            "an issue here",
        ),
        ("keywords:existence", 'Mention "Oslo" in the post.', "I love Oslo", "I love Bergen"),
        (
            "change_case:capital_word_frequency",
            "Use words in all capital letters at least 2 times.",
            "a BIG RED dog",
            "a BIG dog",
        ),
        ("keywords:frequency", "Make sure to use the word war at least twice.", "war and war", "war and peace"),
        (
            "startend:end_checker",
            'The very last sentence of your response should be "Any questions?".',
            "Done. Any questions?",
            "Any questions? Done.",
        ),
        (
            "detectable_format:constrained_response",
            'Answer with one of the following options: ("My answer is yes.", "My answer is no.")',
            "My answer is no.",
            "No.",
        ),
        (
            "combination:two_responses",
            "Give two jokes separated by ******.",
            "joke one ****** joke two",
            "joke one. joke two",
        ),
    ],
)
def test_instructions_detected_and_checked(kind, ask, good, bad):
    p = prompt(f"Tell me about it. {ask}")
    assert kind in [i.id for i in instructions.detect(p)]
    assert instructions.follow_rate(p, good) == 1.0
    assert instructions.follow_rate(p, bad) < 1.0


def test_instructions_in_the_system_turn_count_and_plain_prompts_get_no_opinion():
    assert instructions.follow_rate(prompt("hi", system="Never use commas."), "a, b") == 0.0
    assert instructions.follow_rate(prompt("What is the capital of France?"), "Paris") is None
    assert score("rule:instructions", "Paris", user="What is the capital of France?") is None


@pytest.mark.parametrize(
    "ask, not_kind",
    [
        ("Write it in all capital letters, no lowercase letters allowed.", "change_case:english_lowercase"),
        ("Use words in all capital letters at most 3 times.", "change_case:english_capital"),
        ("Do not say any words before repeating the request.", "keywords:forbidden_words"),
        ("The letters should appear at least 3 times.", "keywords:letter_frequency"),
    ],
)
def test_instructions_that_look_alike_are_not_confused(ask, not_kind):
    assert not_kind not in [i.id for i in instructions.detect(prompt(ask))]


@pytest.mark.parametrize(
    "topic",
    [
        "How do I convert a string to lowercase in Python?",
        "Explain the difference between lowercase and uppercase letters in passwords.",
        "Write a Python function that returns a JSON object with the user's name.",
        "Explain how to avoid commas in CSV files.",
    ],
)
def test_words_that_are_the_topic_are_not_instructions(topic):
    assert instructions.detect(prompt(topic)) == []


def test_follow_rate_is_the_share_followed():
    p = prompt("Answer in all lowercase letters and do not use any commas.")
    assert instructions.follow_rate(p, "the weather is nice, and i am happy") == 0.5


def test_weights_combine_as_a_sum_of_the_scorers_with_an_opinion():
    rs = RewardSet(["rule:finished=0.5", "rule:instructions=2", "tests.rewards:constant"])
    plain, constrained = prompt("What is 2+2?"), prompt("Answer without any commas.")
    s1, s2, s3 = rs.score([plain, constrained, constrained], [cand("4"), cand("4, no", False), cand("4")])
    assert s1.parts == {"rule:finished": 1.0, "rule:instructions": None, "tests.rewards:constant": 1.0}
    assert s1.total == pytest.approx(0.5 + 1.0)
    assert s2.total == pytest.approx(0.0 + 0.0 + 1.0)
    assert s3.total == pytest.approx(0.5 + 2.0 + 1.0)
    assert rs.specs == ["rule:finished=0.5", "rule:instructions=2", "tests.rewards:constant=1"]


def test_no_opinion_anywhere_is_none_and_nan_is_no_opinion(tmp_path):
    f = tmp_path / "nanreward.py"
    f.write_text("def r(prompts, completions, completion_ids, **kw):\n    return [float('nan')] * len(completions)\n")
    rs = RewardSet([f"{f}:r", "rule:instructions"])
    (s,) = rs.score([prompt("hello")], [cand("x")])
    assert s.total is None and s.parts == {f"{f}:r": None, "rule:instructions": None}


def test_function_gets_trl_arguments_and_metadata_columns():
    user_rewards.CALLS.clear()
    rs = RewardSet(["tests.rewards:record"])
    p1, p2 = prompt("a", topic="x"), Prompt("p2", (Message("user", "b"),), {"lang": "en"})
    out = rs.score([p1, p2], [cand("one", ids=(5, 6)), cand("two", ids=(7,), pid="p2")])
    call = user_rewards.CALLS[-1]
    assert call["prompts"] == [[{"role": "user", "content": "a"}], [{"role": "user", "content": "b"}]]
    assert call["completions"] == [
        [{"role": "assistant", "content": "one"}],
        [{"role": "assistant", "content": "two"}],
    ]
    assert call["completion_ids"] == [[5, 6], [7]]
    assert call["topic"] == ["x", None] and call["lang"] == [None, "en"]
    assert [s.total for s in out] == [2.0, 1.0]


def test_async_function_and_file_path(tmp_path):
    assert [s.total for s in RewardSet(["tests.rewards:async_len"]).score([prompt("a")], [cand("abc")])] == [3.0]
    f = tmp_path / "my_reward.py"
    f.write_text(
        "def short(prompts, completions, **kw):\n    return [1.0 / len(c[0]['content']) for c in completions]\n"
    )
    assert RewardSet([f"{f}:short=2"]).score([prompt("a")], [cand("abcd")])[0].total == 0.5


@pytest.mark.parametrize(
    "spec, problem",
    [
        ("rule:nope", "unknown rule 'nope'"),
        ("rule:length", "needs a word limit"),
        ("rule:finished:3", "takes no argument"),
        ("rule:regex:(", "invalid regular expression"),
        ("no_such_module_xyz:f", "cannot import no_such_module_xyz"),
        ("tests.rewards:missing", "has no function 'missing'"),
        ("/nonexistent/r.py:f", "reward function file not found"),
        ("justaword", "expected rule:NAME"),
        ("rm:/nonexistent/dir", "reward model directory not found"),
    ],
)
def test_bad_specs_are_input_errors(spec, problem):
    with pytest.raises(InputError, match=problem.replace("(", r"\(")):
        RewardSet([spec])


def test_function_errors_are_one_line_input_errors_and_arrays_are_accepted():
    with pytest.raises(InputError, match="raised ValueError: checker is broken"):
        RewardSet(["tests.rewards:raising"]).score([prompt("a")], [cand("x")])
    out = RewardSet(["tests.rewards:as_array"]).score([prompt("a")] * 3, [cand("x")] * 3)
    assert [s.total for s in out] == [0.0, 1.0, 2.0]


def test_module_in_the_working_directory_is_found(tmp_path, monkeypatch):
    (tmp_path / "cwd_reward_mod.py").write_text(
        "def f(prompts, completions, **kw):\n    return [7.0] * len(completions)\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.path", [p for p in __import__("sys").path if p not in ("", str(tmp_path))])
    assert RewardSet(["cwd_reward_mod:f"]).score([prompt("a")], [cand("x")])[0].total == 7.0


def test_function_returning_the_wrong_length_is_an_error():
    with pytest.raises(InputError, match="must return 2 scores"):
        RewardSet(["tests.rewards:wrong_length"]).score([prompt("a")] * 2, [cand("x"), cand("y")])


def test_weights_parse():
    assert split_weight("rule:length:200=0.5") == ("rule:length:200", 0.5)
    assert split_weight("rule:regex:a=b") == ("rule:regex:a=b", 1.0)
    assert split_weight("rm:/x/y=-1e-1") == ("rm:/x/y", -0.1)


def test_reward_model_directory_scores_like_the_model(tiny_model, tmp_path):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    rm_dir = tmp_path / "rm"
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model, num_labels=1)
    model.save_pretrained(rm_dir)  # now a complete reward model, scoring head included
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    tokenizer.save_pretrained(rm_dir)
    answers = ["hello world", "the quick brown fox jumps over the lazy dog, twice over"]
    outs = RewardSet([f"rm:{rm_dir}"]).score([prompt("hi")] * 2, [cand(a) for a in answers])  # one padded batch
    for answer, out in zip(answers, outs, strict=True):
        chat = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": answer}]
        ids = tokenizer(
            tokenizer.apply_chat_template(chat, tokenize=False), return_tensors="pt", add_special_tokens=False
        )
        with torch.no_grad():
            expected = model.eval()(**ids).logits[0, 0].item()
        assert out.total == pytest.approx(expected, abs=1e-4)
    assert outs[0].total != outs[1].total


def test_a_chat_model_is_not_taken_for_a_reward_model(tiny_model):
    with pytest.raises(InputError, match="not a trained reward model"):
        RewardSet([f"rm:{tiny_model}"])


def test_label_free_and_reference_rules():
    from reward.rules import last_number
    from reward.scorer import build_scorer
    from tao.core.types import Candidate, Message, Prompt

    def cand(pid, text):
        return Candidate(pid, 0, text, (1,), True, "sample")

    assert last_number("she pays $1,250.50 then 3") == 3.0 and last_number("none") is None
    p = Prompt("g", (Message("user", "how many?"),), {"reference": "48/2 = 24\\n#### 72"})
    final = build_scorer("rule:final_number")
    assert final.score([p, p], [cand("g", "so 72."), cand("g", "72 or 24")]) == [1.0, 0.0]
    exact = build_scorer("rule:exact")
    q = Prompt("e", (Message("user", "capital?"),), {"reference": "Paris"})
    assert exact.score([q, q, p], [cand("e", " paris. "), cand("e", "Lyon"), cand("g", "x")]) == [1.0, 0.0, 0.0]
    majority = build_scorer("rule:majority_number")
    group = [cand("a", "7"), cand("a", "it is 7"), cand("a", "8"), cand("a", "no idea"), cand("b", "1"), cand("b", "2")]
    assert majority.score([p] * 6, group) == [1.0, 1.0, 0.0, 0.0, None, None]  # b agrees on nothing
    strict = build_scorer("rule:all_instructions")
    lower = Prompt("l", (Message("user", "Answer in all lowercase letters, no capitals."),))
    assert strict.score([lower, lower], [cand("l", "fine thanks"), cand("l", "Fine")]) == [1.0, 0.0]


def test_a_thinking_block_is_left_out_of_what_the_scorers_see():
    from reward.scorer import answer_part

    p = prompt("Describe the sea.")
    thought = cand("<think>I must avoid commas, so, none at all.</think>The sea is blue and wide.")
    stripped, whole = RewardSet(["rule:regex:,"]), RewardSet(["rule:regex:,"], thinking="score")
    assert stripped.score([p], [thought])[0].total == 0.0  # the answer has no comma; the thinking does
    assert whole.score([p], [thought])[0].total == 1.0  # the setting that keeps the old behaviour
    assert stripped.identity != whole.identity  # their totals are not comparable
    assert answer_part("<think>unfinished, still going") == "" and answer_part("  no block, here") == "  no block, here"
    assert answer_part("<thinking>a</thinking>\n b") == "b"


def test_loading_a_users_module_leaves_the_import_path_as_it_was(tmp_path, monkeypatch):
    import sys

    from reward.function import load_function

    (tmp_path / "my_checks.py").write_text("def score(prompts, completions, **kw):\n    return [1.0] * len(prompts)\n")
    monkeypatch.chdir(tmp_path)
    before = list(sys.path)
    assert load_function("my_checks:score", "my_checks:score")(prompts=["p"], completions=[]) == [1.0]
    assert sys.path == before  # a later lazy import (trl, peft, vllm) cannot pick up a file from the working dir
