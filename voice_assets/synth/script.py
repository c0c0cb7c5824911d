"""The cast and the dialogue of demo episodes: who says what, in which style, and when.

Lines come from a fixed pool shuffled once per series; episode N reads its own stretch of that
shuffle, so episodes of one series share the cast but never a line (up to len(LINES) // turns
episodes; a Japanese cast reads from the Japanese pool). Turn-taking decisions (who answers,
interjections, overlaps, pauses) are drawn from the seed before any audio exists, so the script
never depends on how long the TTS makes a line.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from voice_assets.synth.voices import Voice

StyleMode = Literal["script", "neutral", "cycle"]
STYLE_CYCLE = ("neutral", "excited", "sad")


@dataclass(frozen=True)
class Character:
    """A recurring character: a voice, a face and a colour for their shots."""

    name: str
    voice: Voice
    face: str  # key into voice_assets.synth.faces.FACES
    color: tuple[int, int, int]  # RGB backdrop of their close-up
    language: str = "en"  # ISO 639-1: which line pool the character speaks from
    called: str = ""  # how others say the name in a line (katakana for Japanese)

    @property
    def spoken_name(self) -> str:
        return self.called or self.name


# Voices chosen by measurement (resemblyzer cosine and tiny.en WER, see tests/test_synth.py):
# the three Piper shifts are as intelligible as the unshifted model and embed far apart.
CAST: dict[str, Character] = {
    "Joe": Character("Joe", Voice("piper", shift=1.0), "joe", (70, 110, 170)),
    "Grace": Character("Grace", Voice("piper", shift=1.45), "grace", (150, 90, 110)),
    "Rex": Character("Rex", Voice("piper", shift=0.78), "rex", (80, 140, 90)),
    # Robotic eSpeak NG voice: distinct, but tiny.en WER is ~0.1-0.2, so not in the default.
    "Robo": Character("Robo", Voice("espeak", espeak_voice="en-gb-x-rp+f2", espeak_rate=150,
                                    espeak_pitch=60), "robo", (120, 120, 130)),
    # Joe's voice on another face: a voice twin (a dub actor voicing two roles), which voice
    # alone cannot tell apart and the speaking face can. Not in the default cast.
    "Mia": Character("Mia", Voice("piper", shift=1.0), "mia", (190, 150, 90)),
    # Japanese characters (Kokoro-82M voices): an anime series' cast, for Japanese end to end.
    "Hana": Character("Hana", Voice("kokoro", kokoro_voice="jf_alpha"), "grace",
                      (150, 90, 110), "ja", "ハナ"),
    "Kenji": Character("Kenji", Voice("kokoro", kokoro_voice="jm_kumo"), "rex",
                       (80, 140, 90), "ja", "ケンジ"),
    "Yuki": Character("Yuki", Voice("kokoro", kokoro_voice="jf_nezumi"), "mia",
                      (190, 150, 90), "ja", "ユキ"),
}
DEFAULT_CAST: tuple[str, ...] = ("Joe", "Grace", "Rex")
JAPANESE_CAST: tuple[str, ...] = ("Hana", "Kenji", "Yuki")

# (text, natural style). "{other}" is replaced by another character's name, as people do.
LINES: tuple[tuple[str, str], ...] = (
    ("I told you the door was locked, but nobody listens to me around here.", "neutral"),
    ("We should leave before the storm reaches the harbor tonight.", "neutral"),
    ("Have you seen my blue notebook anywhere in the kitchen?", "neutral"),
    ("The train was late again, so I walked all the way home.", "sad"),
    ("Maybe we can fix the old radio if we find the right parts.", "neutral"),
    ("Please close the window, the room is getting cold.", "neutral"),
    ("I think the captain knows more than he is telling us.", "neutral"),
    ("We can meet at the library after lunch tomorrow.", "neutral"),
    ("Nobody expected the garden to grow so fast this summer.", "neutral"),
    ("Why would anyone paint the whole house bright yellow?", "excited"),
    ("{other}, you have to see this, the lights are moving again!", "excited"),
    ("We won the whole contest, I cannot believe it!", "excited"),
    ("I miss the old house, it was always so quiet there.", "sad"),
    ("The bakery on the corner closed down last week.", "sad"),
    ("Nobody came to the party, not even my brother.", "sad"),
    ("Look at the size of that boat, what a monster!", "excited"),
    ("{other}, can you hand me the flashlight from the shelf?", "neutral"),
    ("The map says the bridge should be right over there.", "neutral"),
    ("I lost the letter my grandmother gave me.", "sad"),
    ("We finally found the treasure under the lighthouse!", "excited"),
    ("The coffee machine is making that strange noise again.", "neutral"),
    ("If we hurry, we can still catch the last bus.", "neutral"),
    ("My sister is coming to visit us next month.", "neutral"),
    ("This is the best pizza I have ever tasted!", "excited"),
    ("I waited by the phone all night, but nobody called.", "sad"),
    ("The museum opens early on Saturday mornings.", "neutral"),
    ("{other}, did you remember to feed the cat?", "neutral"),
    ("Somebody left the garden gate wide open.", "neutral"),
    ("The snow is so deep that the road is closed.", "neutral"),
    ("We are going to the mountains this weekend!", "excited"),
    ("I wish I had said goodbye to him properly.", "sad"),
    ("The kettle is boiling, does anyone want some tea?", "neutral"),
    ("There is a strange light coming from the basement.", "neutral"),
    ("The concert was amazing, everybody was dancing!", "excited"),
    ("The old oak tree fell down during the night.", "sad"),
    ("{other}, where did you put the spare keys?", "neutral"),
    ("I have been reading that book for weeks now.", "neutral"),
    ("The neighbors are painting their fence green.", "neutral"),
    ("Quick, the movie is about to start!", "excited"),
    ("It rained on my birthday again this year.", "sad"),
    ("Our boat needs a new sail before the race.", "neutral"),
    ("The radio said the storm will pass by morning.", "neutral"),
    ("I found a secret door behind the bookshelf!", "excited"),
    ("My garden was ruined by the frost.", "sad"),
    ("{other}, please turn the music down a little.", "neutral"),
    ("The printer is out of paper again.", "neutral"),
    ("We should paint the kitchen a brighter color.", "neutral"),
    ("They gave us free tickets to the football game!", "excited"),
    ("The little bird in the window box did not survive.", "sad"),
    ("Every morning the baker sings while he works.", "neutral"),
    ("The river is much higher than it was yesterday.", "neutral"),
    ("I can hear the ocean from my bedroom window.", "neutral"),
    ("We got the job, we start on Monday!", "excited"),
    ("Nobody remembers the name of the old village anymore.", "sad"),
    ("{other}, is that your bicycle in the hallway?", "neutral"),
    ("The library has a new section for old maps.", "neutral"),
    ("The soup needs more salt and a little pepper.", "neutral"),
    ("The fireworks tonight are going to be huge!", "excited"),
    ("The lighthouse keeper retired after forty years.", "sad"),
    ("Turn left at the church and follow the river.", "neutral"),
    ("I think somebody has been sleeping in the barn.", "neutral"),
    ("The windows rattle every time a truck goes by.", "neutral"),
    ("My favorite band is playing in town tonight!", "excited"),
    ("The garden looks empty without the roses.", "sad"),
    ("{other}, could you open the curtains, please?", "neutral"),
    ("The clock in the tower stopped at midnight.", "neutral"),
    ("We should take the long way home along the beach.", "neutral"),
    ("We saw a whale jump right next to the boat!", "excited"),
    ("The letters never arrived, and she never wrote again.", "sad"),
    ("The workers are fixing the road outside the school.", "neutral"),
    ("I left my umbrella on the train this morning.", "neutral"),
    ("The candles will burn out before the guests arrive.", "neutral"),
    ("You will never guess who I met at the market!", "excited"),
    ("The farm was sold to a company from the city.", "sad"),
    ("{other}, the soup is ready, come and eat.", "neutral"),
    ("The elevator is broken, so we have to take the stairs.", "neutral"),
    ("Someone is knocking at the back door.", "neutral"),
    ("The painting in the hall is older than the house.", "neutral"),
    ("The snow is finally here, we should go sledding!", "excited"),
    ("The house feels so empty since the children left.", "sad"),
    ("Put the blankets in the cupboard by the stairs.", "neutral"),
    ("The ferry leaves at noon from the north pier.", "neutral"),
    ("The baby finally fell asleep after the long drive.", "neutral"),
    ("I just saw a shooting star over the hill!", "excited"),
    ("The rain washed away all of our chalk drawings.", "sad"),
    ("{other}, have you finished reading the newspaper?", "neutral"),
    ("The bus driver waved at us from across the street.", "neutral"),
    ("The apple tree is full of fruit this autumn.", "neutral"),
    ("We are going to be on the radio tomorrow!", "excited"),
    ("My old dog is too tired to climb the stairs.", "sad"),
)

LINES_JA: tuple[tuple[str, str], ...] = (
    ("ドアに鍵がかかっているって言ったのに、誰も聞いてくれないんだから。", "neutral"),
    ("嵐が港に来る前に、今夜のうちに出発しよう。", "neutral"),
    ("台所で私の青いノートを見なかった？", "neutral"),
    ("電車がまた遅れたから、家まで歩いて帰ったの。", "sad"),
    ("部品が見つかれば、古いラジオを直せるかもしれない。", "neutral"),
    ("窓を閉めてくれる？部屋が寒くなってきた。", "neutral"),
    ("船長は何か隠していると思うんだ。", "neutral"),
    ("明日のお昼の後、図書館で会おうよ。", "neutral"),
    ("どうして家を全部黄色に塗ったんだろう？", "excited"),
    ("{other}、見て！また光が動いているよ！", "excited"),
    ("大会で優勝したなんて、信じられない！", "excited"),
    ("古い家が恋しいな。いつも静かだったから。", "sad"),
    ("角のパン屋さんが先週閉店しちゃった。", "sad"),
    ("{other}、棚の懐中電灯を取ってくれる？", "neutral"),
    ("地図によると、橋はすぐそこにあるはずだよ。", "neutral"),
    ("おばあちゃんがくれた手紙をなくしちゃった。", "sad"),
    ("灯台の下でついに宝物を見つけたぞ！", "excited"),
    ("急げば、まだ最終バスに間に合うよ。", "neutral"),
    ("来月、姉がここに遊びに来るんだ。", "neutral"),
    ("こんなにおいしいピザは初めて食べた！", "excited"),
    ("博物館は土曜日の朝早くから開いているよ。", "neutral"),
    ("{other}、猫にご飯をあげるのを忘れなかった？", "neutral"),
    ("雪が深すぎて、道路が通行止めになっている。", "neutral"),
    ("今週末は山に行くんだ！", "excited"),
    ("お湯が沸いたよ。誰かお茶を飲む？", "neutral"),
    ("地下室から不思議な光が見えるんだけど。", "neutral"),
    ("{other}、予備の鍵をどこに置いたの？", "neutral"),
    ("早く！映画がもうすぐ始まるよ！", "excited"),
    ("今年もまた誕生日に雨が降った。", "sad"),
    ("本棚の後ろに秘密の扉を見つけた！", "excited"),
    ("{other}、音楽を少し小さくしてくれる？", "neutral"),
    ("時計台の時計が真夜中に止まったんだ。", "neutral"),
    ("海岸沿いの長い道を通って帰ろうよ。", "neutral"),
    ("船のすぐ横でクジラが跳ねたのを見た！", "excited"),
    ("学校の前の道路を工事している。", "neutral"),
    ("今朝、電車に傘を忘れてきちゃった。", "neutral"),
    ("市場で誰に会ったか、絶対に当てられないよ！", "excited"),
    ("子供たちが出ていってから、家がとても寂しい。", "sad"),
    ("{other}、スープができたよ。食べにおいで。", "neutral"),
    ("エレベーターが壊れているから、階段を使おう。", "neutral"),
)

INTERJECTIONS_JA: tuple[tuple[str, str], ...] = (
    ("うん。", "neutral"), ("えっ？", "excited"), ("わかった。", "neutral"),
    ("本当？", "excited"), ("まさか！", "excited"), ("そうだね。", "neutral"),
    ("待って！", "excited"), ("いいよ。", "neutral"), ("ああ、そんな。", "sad"),
    ("その通り。", "neutral"), ("ねえ！", "excited"), ("もういい。", "sad"),
)

INTERJECTIONS: tuple[tuple[str, str], ...] = (
    ("Yeah.", "neutral"), ("What?", "excited"), ("Okay.", "neutral"),
    ("Really?", "excited"), ("No way!", "excited"), ("Right.", "neutral"),
    ("Wait!", "excited"), ("Sure.", "neutral"), ("Oh no.", "sad"),
    ("Exactly.", "neutral"), ("Hey!", "excited"), ("Fine.", "sad"),
)


def cast_language(cast: Sequence[str]) -> str:
    """The one language a cast speaks (a dialogue does not mix line pools)."""
    languages = sorted({CAST[c].language for c in cast if c in CAST})
    if len(languages) > 1:
        raise ValueError(f"cast {list(cast)} mixes languages {languages}; one episode is "
                         "one language")
    return languages[0] if languages else "en"


@dataclass(frozen=True)
class ScriptLine:
    """One entry of the script, before any audio exists."""

    character: str
    text: str
    style: str
    interjection: bool
    # Start before the previous line ends: cross-talk, or a backchannel "Yeah." over a line.
    overlap: bool
    # Silence before this entry when it does not overlap (seconds).
    pause_s: float
    # Interjections: start this fraction into the line they react to. Overlapping lines:
    # start this many seconds before the previous line ends.
    overlap_at: float


def write_script(
    cast: Sequence[str],
    *,
    series: str,
    seed: int,
    index: int,
    turns: int,
    interjections: int,
    overlaps: int,
    style_mode: StyleMode = "neutral",
) -> list[ScriptLine]:
    """The episode's script: ``turns`` full lines, ``interjections`` reactions inserted after
    random lines (the first always talks over the line), ``overlaps`` lines that start before
    the previous one ends, and a few long pauses where a scene breathes."""
    if len(cast) < 2:
        raise ValueError(f"a dialogue needs at least 2 characters, got {list(cast)}")
    unknown = [c for c in cast if c not in CAST]
    if unknown:
        raise ValueError(f"unknown characters {unknown}; known: {', '.join(CAST)}")
    language = cast_language(cast)
    lines, reactions = (LINES_JA, INTERJECTIONS_JA) if language == "ja" else (
        LINES, INTERJECTIONS)
    if style_mode not in ("script", "neutral", "cycle"):
        raise ValueError(f"styles must be 'script', 'neutral' or 'cycle', got '{style_mode}'")
    if turns < 1 or interjections < 0 or overlaps < 0:
        raise ValueError(f"need turns >= 1 and non-negative counts, got turns={turns}, "
                         f"interjections={interjections}, overlaps={overlaps}")
    order = list(range(len(lines)))
    random.Random(f"lines:{series}").shuffle(order)
    offset = (max(index, 1) - 1) * turns
    rng = random.Random(f"script:{series}:{seed}:{index}")

    # Whoever has waited longest is likeliest to speak next: everyone gets turns, and two
    # characters still often go back and forth for a while, as in a conversation.
    waited = {c: 2 for c in cast}
    speakers: list[str] = []
    for _ in range(turns):
        others = [c for c in cast if not speakers or c != speakers[-1]]
        who = rng.choices(others, weights=[waited[c] ** 2 for c in others])[0]
        speakers.append(who)
        for c in cast:
            waited[c] = 1 if c == who else waited[c] + 1
    overlapping = set(rng.sample(range(1, turns), min(overlaps, turns - 1)))
    after = sorted(rng.sample(range(turns), min(interjections, turns)))
    words = rng.sample(reactions, len(reactions))
    long_pauses = set(rng.sample(range(1, turns), min(max(1, turns // 8), turns - 1)))

    out: list[ScriptLine] = []
    said: dict[str, int] = {}
    for i, speaker in enumerate(speakers):
        said[speaker] = said.get(speaker, 0) + 1
        text, natural = lines[order[(offset + i) % len(lines)]]
        if "{other}" in text:
            other = rng.choice([c for c in cast if c != speaker])
            text = text.replace("{other}", CAST[other].spoken_name)
        style = {"neutral": "neutral", "script": natural,
                 # Each character cycles through the styles, so each is heard in all three.
                 "cycle": STYLE_CYCLE[(said[speaker] - 1) % len(STYLE_CYCLE)]}[style_mode]
        pause = rng.uniform(1.5, 2.3) if i in long_pauses else rng.uniform(0.3, 0.9)
        out.append(ScriptLine(speaker, text, style, False, i in overlapping, pause,
                              rng.uniform(0.4, 0.8)))
        for k in [k for k, a in enumerate(after) if a == i]:
            reactor = rng.choice([c for c in cast if c != speaker])
            word, natural = words[k % len(words)]
            talk_over = k == 0 or rng.random() < 0.6
            out.append(ScriptLine(reactor, word, natural if style_mode == "script" else "neutral",
                                  True, talk_over, rng.uniform(0.15, 0.4),
                                  rng.uniform(0.6, 0.85)))
    return out
