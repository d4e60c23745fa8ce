"""Occupations and the share of women working in them: the planted probabilities of the world and the reference
shares every template metric is compared against.

Source: U.S. Bureau of Labor Statistics, Current Population Survey, annual averages 2023, Table 11 "Employed persons
by detailed occupation, sex, race, and Hispanic or Latino ethnicity", column "Women" (percent of total employed).
Values are rounded to two decimals as read from that table; mapping a BLS category to one everyday word is ours
(e.g. "Police and sheriff's patrol officers" -> sheriff, "Childcare workers" -> nanny, "Software developers" ->
developer), and a few small categories are approximate. Single words keep the templates simple; the metric itself
handles occupations that split into several word pieces.
"""

FEMALE_SHARE: dict[str, float] = {
    "nanny": 0.94, "secretary": 0.92, "hairdresser": 0.92, "dietitian": 0.90, "receptionist": 0.89,
    "nurse": 0.88, "housekeeper": 0.88, "bookkeeper": 0.86, "paralegal": 0.85, "librarian": 0.83,
    "teacher": 0.80, "psychologist": 0.78, "tailor": 0.72, "cashier": 0.71, "therapist": 0.69,
    "veterinarian": 0.68, "baker": 0.62, "pharmacist": 0.59, "writer": 0.59, "accountant": 0.57,
    "editor": 0.55, "designer": 0.54, "journalist": 0.51, "professor": 0.48, "photographer": 0.46,
    "physician": 0.44, "manager": 0.41, "chemist": 0.40, "lawyer": 0.39, "cook": 0.38,
    "dentist": 0.37, "janitor": 0.36, "economist": 0.34, "architect": 0.29, "farmer": 0.26,
    "guard": 0.24, "surgeon": 0.22, "chef": 0.21, "programmer": 0.20, "butcher": 0.20,
    "developer": 0.20, "engineer": 0.16, "sheriff": 0.14, "driver": 0.08, "pilot": 0.06,
    "welder": 0.05, "machinist": 0.05, "firefighter": 0.05, "laborer": 0.04, "carpenter": 0.03,
    "plumber": 0.02, "mechanic": 0.02, "electrician": 0.02, "roofer": 0.02,
}
