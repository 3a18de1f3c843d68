"""What the world's courses are about: topics per domain, each with the concepts its
sections teach, and the phrasing Stage 4 uses for briefs.

A course draws one topic of its domain; its sections take the topic's concepts in order and
its lessons take facets of a section's concept. The bank is small on purpose: it shapes the
briefs' length and wording (and so the prompts' token counts), not the world's outcomes.
"""

from __future__ import annotations

TOPICS: dict[str, dict[str, list[str]]] = {
    "programming": {
        "Python programming": ["variables", "conditions", "loops", "functions", "lists",
                               "dictionaries", "files", "error handling", "classes", "testing"],
        "Web development": ["HTML structure", "CSS layout", "JavaScript basics", "the DOM",
                            "events", "forms", "HTTP requests", "APIs", "accessibility",
                            "deployment"],
        "Databases with SQL": ["tables", "SELECT queries", "filtering", "joins", "grouping",
                               "indexes", "transactions", "normalisation", "views",
                               "query plans"],
        "Data structures": ["arrays", "linked lists", "stacks", "queues", "hash tables",
                            "trees", "heaps", "graphs", "sorting", "complexity"],
    },
    "mathematics": {
        "Statistics for data analysis": ["descriptive statistics", "probability",
                                         "distributions", "sampling", "confidence intervals",
                                         "hypothesis tests", "regression", "correlation",
                                         "experiments", "Bayesian reasoning"],
        "Linear algebra": ["vectors", "matrices", "linear maps", "determinants",
                           "eigenvalues", "orthogonality", "least squares",
                           "the singular value decomposition", "vector spaces", "projections"],
        "Calculus": ["limits", "derivatives", "the chain rule", "optimisation", "integrals",
                     "the fundamental theorem", "series", "differential equations",
                     "partial derivatives", "approximation"],
        "Everyday arithmetic": ["fractions", "percentages", "ratios", "units", "estimation",
                                "negative numbers", "powers", "averages", "budgets", "interest"],
    },
    "science": {
        "Cell biology": ["cell structure", "membranes", "proteins", "enzymes", "respiration",
                         "photosynthesis", "DNA", "cell division", "signalling", "microscopy"],
        "Introductory physics": ["motion", "forces", "energy", "momentum", "waves",
                                 "electricity", "magnetism", "heat", "optics", "measurement"],
        "Chemistry basics": ["atoms", "the periodic table", "chemical bonds", "reactions",
                             "stoichiometry", "acids and bases", "solutions", "gases",
                             "redox", "lab safety"],
        "Earth and climate": ["the water cycle", "weather", "the atmosphere", "oceans",
                              "rocks", "plate tectonics", "climate records", "carbon cycle",
                              "ecosystems", "climate models"],
    },
    "business": {
        "Marketing basics": ["customer segments", "positioning", "pricing", "channels",
                             "campaigns", "branding", "content", "metrics", "A/B tests",
                             "budgets"],
        "Small business finance": ["cash flow", "profit and loss", "balance sheets",
                                   "budgets", "forecasts", "pricing", "invoicing", "taxes",
                                   "loans", "break-even analysis"],
        "Project management": ["scope", "work breakdown", "schedules", "the critical path",
                               "risk", "stakeholders", "budgets", "status reporting",
                               "change control", "retrospectives"],
        "Negotiation": ["preparation", "interests", "options", "anchoring", "concessions",
                        "BATNA", "communication", "deadlock", "agreements", "ethics"],
    },
    "humanities": {
        "World history": ["ancient empires", "trade routes", "religions", "revolutions",
                          "industrialisation", "colonialism", "world wars", "the Cold War",
                          "decolonisation", "globalisation"],
        "Public speaking essentials": ["audience analysis", "talk outlines", "openings",
                                       "stories", "slides", "voice", "body language",
                                       "nerves", "questions", "rehearsal"],
        "Philosophy": ["arguments", "logic", "knowledge", "ethics", "free will", "mind",
                       "justice", "aesthetics", "science", "meaning"],
        "Creative writing": ["characters", "plot", "point of view", "dialogue", "setting",
                             "conflict", "revision", "voice", "poetry", "publishing"],
    },
    "language_learning": {
        "Spanish for travel": ["greetings", "numbers", "directions", "food", "shopping",
                               "hotels", "transport", "emergencies", "small talk",
                               "the past tense"],
        "English grammar": ["tenses", "articles", "prepositions", "modal verbs",
                            "conditionals", "the passive", "reported speech",
                            "phrasal verbs", "relative clauses", "punctuation"],
        "German for beginners": ["pronunciation", "articles", "cases", "verbs",
                                 "word order", "questions", "numbers", "the perfect tense",
                                 "adjectives", "everyday phrases"],
        "Japanese writing": ["hiragana", "katakana", "basic kanji", "stroke order",
                             "particles", "verbs", "politeness", "counters", "reading",
                             "handwriting"],
    },
    "arts": {
        "Watercolour painting": ["water control", "washes", "wet-on-wet", "glazing",
                                 "colour mixing", "edges", "skies", "trees", "figures",
                                 "composition"],
        "Photography": ["exposure", "aperture", "shutter speed", "ISO", "focus",
                        "composition", "light", "portraits", "landscapes", "editing"],
        "Music theory": ["notation", "rhythm", "scales", "intervals", "chords",
                         "harmony", "cadences", "melody", "form", "ear training"],
        "Drawing": ["lines", "shapes", "perspective", "shading", "proportion", "gesture",
                    "texture", "still life", "faces", "sketchbooks"],
    },
    "health": {
        "Nutrition science": ["macronutrients", "micronutrients", "energy balance",
                              "food labels", "hydration", "fibre", "meal planning",
                              "supplements", "diets", "gut health"],
        "Better sleep": ["sleep cycles", "the body clock", "caffeine", "light",
                         "bedroom environment", "naps", "stress", "exercise", "sleep diaries",
                         "insomnia"],
        "First aid": ["scene safety", "calling for help", "CPR", "choking", "bleeding",
                      "burns", "fractures", "shock", "allergies", "recovery position"],
        "Fitness foundations": ["warm-ups", "strength", "endurance", "flexibility",
                                "technique", "progression", "recovery", "injury prevention",
                                "training plans", "motivation"],
    },
}

FACETS = ("the core idea of {c}", "{c} step by step", "worked cases of {c}",
          "{c} in practice", "common patterns in {c}", "tools for {c}")
METHODS = ("worked examples and spaced practice", "short projects", "case studies",
           "guided practice and feedback", "discussion and reflection")
SECOND = ("Alternate short explanations with hands-on exercises",
          "Start every section from a concrete problem",
          "Give feedback on every practice task")
STRATEGY_POINTS = ("Each lesson ends with a check for understanding",
                   "Projects grow in scope from section to section",
                   "Learners explain their reasoning in their own words")


def fallback_topic(domain: str) -> tuple[str, list[str]]:
    """A domain the bank does not know (a custom world): a topic named after it."""
    name = domain.replace("_", " ")
    return f"{name.capitalize()} essentials", [f"{name} topic {k + 1}" for k in range(10)]
