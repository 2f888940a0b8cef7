"""The yardstick (IFEval's checker on IFEval's labels) and the reward's agreement with it."""

import pytest

from reward import ifeval
from reward.instructions import detect, follow_rate
from reward.scorer import build_scorer
from tao.core.errors import InputError
from tao.core.types import Candidate, Message, Prompt

ITEM = {
    "instruction_id_list": ["punctuation:no_comma", "length_constraints:number_words"],
    "kwargs": [{}, {"relation": "less than", "num_words": 8}],
}
ASK = "Describe the sea in under 8 words. Do not use any commas."


def prompt(text=ASK, **metadata):
    return Prompt("p", (Message("user", text),), metadata)


def cand(text):
    return Candidate("p", 0, text, (1,), True, "sample")


@pytest.mark.parametrize(
    "answer, prompt_level, instruction_level",
    [
        ("Blue and endless.", 1.0, 1.0),
        ("Blue, endless.", 0.0, 0.5),
        ("The sea is blue and wide and deep, always.", 0.0, 0.0),
    ],
)
def test_the_yardstick_scores_by_the_items_own_labels(answer, prompt_level, instruction_level):
    p = prompt(**ITEM)
    assert build_scorer("ifeval").score([p], [cand(answer)]) == [prompt_level]
    assert build_scorer("ifeval:instructions").score([p], [cand(answer)]) == [instruction_level]


def test_the_yardstick_reads_labels_not_the_prompt_text():
    # The text asks for nothing; the labels say "no commas": the labels decide.
    p = prompt("Describe the sea.", instruction_id_list=["punctuation:no_comma"], kwargs=[{}])
    assert build_scorer("ifeval").score([p, p], [cand("Blue, wide."), cand("Blue and wide.")]) == [0.0, 1.0]


def test_items_without_labels_get_no_opinion_and_bad_labels_are_input_errors():
    assert build_scorer("ifeval").score([prompt()], [cand("x")]) == [None]
    with pytest.raises(InputError, match="unknown IFEval instruction"):
        build_scorer("ifeval").score([prompt(instruction_id_list=["made:up"], kwargs=[{}])], [cand("x")])
    with pytest.raises(InputError, match="one object per instruction"):
        build_scorer("ifeval").score([prompt(instruction_id_list=["punctuation:no_comma"], kwargs=[])], [cand("x")])
    with pytest.raises(InputError, match="ifeval:instructions"):
        build_scorer("ifeval:prompt")


def test_the_reward_finds_the_labelled_instructions_and_checks_them_as_the_yardstick_does():
    found = {(i.id, tuple(sorted(i.arguments.items()))) for i in detect(prompt())}
    assert found == {
        ("punctuation:no_comma", ()),
        ("length_constraints:number_words", (("num_words", 8), ("relation", "less than"))),
    }
    yardstick = build_scorer("ifeval:instructions")
    for answer in ("Blue and endless.", "Blue, endless.", "The sea is blue and wide and deep, always."):
        assert follow_rate(prompt(), answer) == yardstick.score([prompt(**ITEM)], [cand(answer)])[0]


@pytest.mark.parametrize(
    "ask, expected",
    [
        ("Answer in at most 50 words.", [("less than", 51)]),
        ("Answer with more than 800 words.", [("at least", 801)]),
        ("Your entire reply should contain 600 to 700 words.", [("at least", 600), ("less than", 701)]),
        ("Keep it to 100 words or less.", [("less than", 101)]),
        ("Write a 300+ word summary.", [("at least", 300)]),
    ],
)
def test_bounds_are_stated_in_ifevals_two_relations(ask, expected):
    found = [i.arguments for i in detect(prompt(ask)) if i.id == "length_constraints:number_words"]
    assert sorted((a["relation"], a["num_words"]) for a in found) == sorted(expected)


def test_the_reward_ignores_labels_in_the_item():
    # The training reward reads the text alone: labels that disagree with it change nothing.
    lying = prompt(instruction_id_list=["change_case:english_capital"], kwargs=[{}])
    assert [i.id for i in detect(lying)] == [i.id for i in detect(prompt())]
    assert follow_rate(lying, "Blue and endless.") == 1.0


def test_sentence_counts_work_without_nltk_data():
    assert ifeval.PUNKT  # says which Punkt counts
    asked = {"relation": "less than", "num_sentences": 3}
    assert ifeval.follows("length_constraints:number_sentences", asked, "One. Two.", "")
    assert not ifeval.follows("length_constraints:number_sentences", asked, "One. Two. Dr. Three is here. Four.", "")


@pytest.mark.parametrize(
    ("ask", "answer", "repaired"),
    [
        (
            "Write a poem. Your entire response should be in English, and in all lowercase letters.",
            "The Rain Is Falling on the roof.",
            "the rain is falling on the roof.",
        ),
        (
            "Describe Paris. Your answer must be in English and in all capital letters.",
            "The city is known for its museums and food.",
            "THE CITY IS KNOWN FOR ITS MUSEUMS AND FOOD.",
        ),
        ("Describe a cat. Wrap your entire response with double quotation marks.", " A cat. ", '"A cat."'),
        ("List fruit. Do not use any commas in your response.", "Apples, pears , plums", "Apples pears plums"),
        (
            'Finish your response with this exact phrase "Is there anything else I can help with?". Say hi.',
            "Hello.",
            "Hello. Is there anything else I can help with?",
        ),
        (
            "Write a haiku about rain.\n\nFirst repeat the exact request above, then give your answer. Do not say any "
            "word before repeating the exact request.",
            "Rain falls.",
            "Write a haiku about rain.\n\nRain falls.",
        ),
    ],
)
def test_repair_makes_the_fix_the_yardstick_checks(ask, answer, repaired):
    from reward.instructions.repair import repair

    prompt = Prompt("p", (Message("user", ask),))
    assert follow_rate(prompt, answer) < 1
    assert repair(prompt, answer) == repaired
    assert follow_rate(prompt, repaired) == 1.0
    assert repair(prompt, repaired) == repaired  # a followed instruction is left alone


def test_repair_combines_fixes_and_leaves_other_instructions_alone():
    from reward.instructions.repair import repair

    ask = "Tell me about dogs. Wrap your entire response in double quotation marks and use all lowercase letters."
    prompt = Prompt("p", (Message("user", ask),))
    assert repair(prompt, "Dogs, Cats.") == '"dogs, cats."'
    unfixable = Prompt("p", (Message("user", "Write about dogs in at least 300 words."),))
    assert repair(unfixable, "Dogs bark.") == "Dogs bark."


def test_the_reward_repairs_only_with_an_instruction_rule_among_its_scorers():
    from reward.scorer import RewardSet

    prompt = Prompt("p", (Message("user", "Describe rain. Your entire response should be in all lowercase letters."),))
    assert RewardSet(["rule:finished", "rule:all_instructions=2"]).repair(prompt, "Rain Falls") == "rain falls"
    assert RewardSet(["rule:finished"]).repair(prompt, "Rain Falls") == "Rain Falls"


def test_the_reward_repairs_a_reasoning_models_answer_not_its_thinking():
    from reward.scorer import RewardSet

    prompt = Prompt("p", (Message("user", "Describe rain. Your entire response should be in all lowercase letters."),))
    rewards = RewardSet(["rule:instructions"])
    thought = "<think>\nThe User Wants Rain.\n</think>\n\nRain Falls"
    assert rewards.repair(prompt, thought) == "<think>\nThe User Wants Rain.\n</think>\n\nrain falls"
    assert rewards.repair(prompt, "<think>Still Thinking") == "<think>Still Thinking"  # no answer yet: nothing to fix
    assert RewardSet(["rule:instructions"], thinking="score").repair(prompt, thought) == thought.lower()


def test_a_verdict_is_the_same_on_every_call_where_ifeval_would_draw_at_random():
    # IFEval's letter count replaces a "letter" that is not one ("!", as item 1129 has) by a random letter.
    args = {"let_relation": "at least", "letter": "!", "let_frequency": 6}
    verdicts = {ifeval.follows("keywords:letter_frequency", args, "aaaaaaaa bbbbbbb!", "") for _ in range(200)}
    assert len(verdicts) == 1
