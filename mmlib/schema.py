"""The facts of the two datasets' layouts, in one place: names, modalities, times, columns, lead order.

Everything here describes the data as the study reads it (``../shared/STUDY.md`` section 2): the
loader (:mod:`mmlib.data.cohort`), the synthetic generator (:mod:`mmlib.data.synth` and its
simulators), the readers, the notes (:mod:`mmlib.text`) and the figures take these names from here,
so that real and synthetic data, and every step after them, agree on one spelling. Plain constants
only: this module imports nothing from :mod:`mmlib` and does no work at import time.
"""
from __future__ import annotations

# ------------------------------------------------------------------------------------------- cohorts
#: The two datasets, by the key the code uses: MIMIC-Eye and MIMIC-IV-Ext-MDS-ED.
COHORTS = ("mimic_eye", "mds_ed")

#: Display names of the cohorts, as the book prints them.
COHORT_NAMES = {"mimic_eye": "MIMIC-Eye", "mds_ed": "MIMIC-IV-Ext-MDS-ED"}


def display_name(cohort: str) -> str:
    """The name the book gives a cohort (:data:`COHORT_NAMES`; an unknown name is shown as it is)."""
    return COHORT_NAMES.get(cohort, cohort)

#: Modalities of each cohort, in the paper's order (MIMIC-Eye: MIMIC-IV-ED arrival/triage and vital
#: signs, ICD codes of earlier MIMIC-IV hospital admissions, MIMIC-CXR-JPG chest X-ray; MDS-ED:
#: demographics/biometrics, vital signs and labs of the first 90 minutes, the 12-lead ECG).
MODALITIES = {"mimic_eye": ("arrival", "vitals", "codes", "cxr"), "mds_ed": ("arrival", "vitals", "labs", "ecg")}

#: The patient-level splits, in order (MDS-ED: its strat folds mapped by the split fractions; MIMIC-Eye is
#: split by the loader).
SPLITS = ("train", "val", "test")

# -------------------------------------------------------------------------------------- prediction time
#: Hours after ED arrival at which each cohort's prediction is made; nothing recorded later is a feature
#: (MIMIC-Eye: the study's choice; MDS-ED: its features cover the first 90 minutes).
PREDICTION_HOURS = {"mimic_eye": 3.0, "mds_ed": 1.5}

#: What "prediction time" means in each cohort (``{h}``: hours for MIMIC-Eye, minutes for MDS-ED), as
#: :attr:`mmlib.data.Cohort.prediction_time` states it.
PREDICTION_TIME = {
    "mimic_eye": ("{h:g} hours after ED arrival (edstays.intime). Features: arrival and triage, the ED vital "
                  "signs charted by then, ICD codes of earlier hospital admissions, and a chest X-ray taken by "
                  "then. The disposition (admission) and all discharge diagnoses are recorded later."),
    "mds_ed": ("{h:g} minutes after ED arrival (general_intime). Features: demographics, biometrics, triage "
               "acuity, vital signs and labs of the first 90 minutes (as MDS-ED defines them), and an ECG "
               "recorded by then. Deterioration events and diagnoses are recorded later."),
}

# ---------------------------------------------------------------------------------- columns of the tables
#: Vital signs, by their MIMIC-IV-ED names (triage.csv / vitalsign.csv columns; MDS-ED ``vitals_{name}_*``).
VITALS = ("temperature", "heartrate", "resprate", "o2sat", "sbp", "dbp")

#: Summary statistics MDS-ED stores per vital sign and lab (``vitals_{name}_{stat}``, ``labvalues_{name}_{stat}``),
#: as its ``full_preprocessing.py`` computes them over the values of the first 90 minutes in chart order:
#: ``std`` with ddof 0 (0 for one value), ``rate_change`` = (last - first) / first (NaN when first is 0),
#: ``coeff`` = least-squares slope of value on minutes since arrival (0 for one value).
STATS = ("mean", "median", "min", "max", "std", "first", "last", "rate_change", "coeff")

#: The release's 45 labs, in its column order, as column names (MIMIC-IV ``d_labitems.label`` lower-cased,
#: spaces -> underscores: ``labvalues_{name}_{stat}``); values in the units of MIMIC-IV's labevents.
LABS = ("absolute_basophil_count", "absolute_eosinophil_count", "absolute_lymphocyte_count",
        "alanine_aminotransferase_(alt)", "albumin", "alkaline_phosphatase", "asparate_aminotransferase_(ast)",
        "bands", "base_excess", "basophils", "bicarbonate", "bilirubin,_direct", "bilirubin,_total",
        "c-reactive_protein", "calcium,_total", "carboxyhemoglobin", "chloride", "creatine_kinase_(ck)",
        "creatine_kinase,_mb_isoenzyme", "creatinine", "eosinophils", "fibrinogen,_functional", "free_calcium",
        "glucose", "hematocrit", "hemoglobin", "inr(pt)", "lactate", "lymphocytes", "magnesium", "neutrophils",
        "oxygen_saturation", "pt", "ptt", "phosphate", "platelet_count", "potassium", "rdw", "red_blood_cells",
        "sodium", "troponin_t", "urea_nitrogen", "white_blood_cells", "pco2", "ph")

#: Unit of each lab of :data:`LABS` (MIMIC-IV ``labevents.valueuom`` of the lab's most frequent fluid).
LAB_UNITS = {
    "absolute_basophil_count": "K/uL", "absolute_eosinophil_count": "K/uL", "absolute_lymphocyte_count": "K/uL",
    "alanine_aminotransferase_(alt)": "IU/L", "albumin": "g/dL", "alkaline_phosphatase": "IU/L",
    "asparate_aminotransferase_(ast)": "IU/L", "bands": "%", "base_excess": "mEq/L", "basophils": "%",
    "bicarbonate": "mEq/L", "bilirubin,_direct": "mg/dL", "bilirubin,_total": "mg/dL", "c-reactive_protein": "mg/L",
    "calcium,_total": "mg/dL", "carboxyhemoglobin": "%", "chloride": "mEq/L", "creatine_kinase_(ck)": "IU/L",
    "creatine_kinase,_mb_isoenzyme": "ng/mL", "creatinine": "mg/dL", "eosinophils": "%",
    "fibrinogen,_functional": "mg/dL", "free_calcium": "mmol/L", "glucose": "mg/dL", "hematocrit": "%",
    "hemoglobin": "g/dL", "inr(pt)": "", "lactate": "mmol/L", "lymphocytes": "%", "magnesium": "mg/dL",
    "neutrophils": "%", "oxygen_saturation": "%", "pt": "sec", "ptt": "sec", "phosphate": "mg/dL",
    "platelet_count": "K/uL", "potassium": "mEq/L", "rdw": "%", "red_blood_cells": "m/uL", "sodium": "mEq/L",
    "troponin_t": "ng/mL", "urea_nitrogen": "mg/dL", "white_blood_cells": "K/uL", "pco2": "mm Hg", "ph": "units",
}

#: Unit of each MDS-ED vital sign (``vitals_{name}_*``): MDS-ED converts temperature to degrees Celsius
#: (MIMIC-IV-ED's triage/vitalsign tables chart it in Fahrenheit).
MDS_ED_VITAL_UNITS = {"temperature": "°C", "heartrate": "/min", "resprate": "/min", "o2sat": "%",
                      "sbp": "mmHg", "dbp": "mmHg"}

#: Physiologically possible range of each MDS-ED vital sign (units of :data:`MDS_ED_VITAL_UNITS`: temperature
#: in degrees Celsius), closed interval, and of the ESI acuity. The loader (:mod:`mmlib.data.mds_ed`) sets a
#: level statistic (mean, median, min, max, first, last) outside it to NaN and counts it in ``Cohort.info``;
#: MDS-ED's own preprocessing only removed values beyond 50-150 °F (10-65.6 °C), heart rate 700, respiratory
#: rate 300, SpO2 0-100 and blood pressure 500. (MIMIC-Eye's Fahrenheit ranges: :data:`VITAL_RANGES`.)
MDS_ED_VITAL_RANGES = {"temperature": (25.0, 45.0), "heartrate": (10.0, 300.0), "resprate": (1.0, 80.0),
                       "o2sat": (30.0, 100.0), "sbp": (30.0, 300.0), "dbp": (10.0, 250.0), "acuity": (1.0, 5.0)}

#: Ages MDS-ED stays are included at (years, closed interval): younger or older stays are excluded and
#: counted; a negative age is an error.
MDS_ED_AGE_RANGE = (18, 120)

#: The 14 CheXpert labels of MIMIC-CXR-JPG (``cxr_chexpert.csv`` columns: 1.0 positive, 0.0 negative,
#: -1.0 uncertain, empty not mentioned).
CHEXPERT = ("Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Enlarged Cardiomediastinum", "Fracture",
            "Lung Lesion", "Lung Opacity", "No Finding", "Pleural Effusion", "Pleural Other", "Pneumonia",
            "Pneumothorax", "Support Devices")

#: The chest X-ray findings the study predicts and reads (snake-case: cxr_reader's IMPRESSION, the targets below).
CXR_FINDINGS = ("cardiomegaly", "consolidation", "edema", "pleural_effusion")

#: MIMIC-Eye's chest X-ray targets: CheXpert label -> target column of :class:`mmlib.data.Cohort` (1 = positive).
CXR_TARGETS = {"Cardiomegaly": "cxr_cardiomegaly", "Consolidation": "cxr_consolidation", "Edema": "cxr_edema",
               "Pleural Effusion": "cxr_pleural_effusion"}

#: MDS-ED's 15 deterioration targets, in its column order (columns ``deterioration_{name}``, floats 0.0/1.0;
#: -999 = undefined, see :data:`MDS_ED_UNDEFINED_TARGETS`).
DETERIORATION = ("severe_hypoxemia", "ecmo", "vasopressors", "inotropes", "mechanical_ventilation",
                 "cardiac_arrest", "icu_24h", "icu_stay", "mortality_1d", "mortality_7d", "mortality_28d",
                 "mortality_90d", "mortality_180d", "mortality_365d", "mortality_stay")

#: MDS-ED's marker of an undefined label.
MDS_ED_UNDEFINED = -999

#: The deterioration targets that can be -999, and why (MDS-ED ``full_preprocessing.py``): death within
#: 1.5 h of arrival (``general_mortality_hours`` < 1.5, computed from the date of death, so any death on
#: the arrival day counts), already in the ICU (ICU admission < 1.5 h after arrival), and severe
#: hypoxemia without an SpO2 before and after 90 minutes or with SpO2 <= 85 % already in the first 90 minutes.
MDS_ED_UNDEFINED_TARGETS = {
    **{f"mortality_{h}": "death within 1.5 h of ED arrival" for h in ("1d", "7d", "28d", "90d", "180d", "365d",
                                                                        "stay")},
    "icu_24h": "ICU admission within 1.5 h of ED arrival", "icu_stay": "ICU admission within 1.5 h of ED arrival",
    "severe_hypoxemia": "no SpO2 before or after 90 minutes, or SpO2 <= 85 % within the first 90 minutes",
}

#: The discharge-diagnosis targets the study reads (columns ``diagnoses_{ICD-10 prefix}``) -> the condition
#: they code (the synthetic generator's latent condition of that name).
DIAGNOSES = {"i10": "hypertension", "i48": "af", "i50": "heart_failure", "j18": "pneumonia", "a41": "sepsis",
             "i21": "acs", "n17": "aki", "j44": "copd"}

#: How the book names the targets (:func:`target_label`); the tables' CSV downloads keep the column names.
DETERIORATION_LABELS = {
    "severe_hypoxemia": "severe hypoxemia", "ecmo": "ECMO", "vasopressors": "vasopressors", "inotropes": "inotropes",
    "mechanical_ventilation": "mechanical ventilation", "cardiac_arrest": "cardiac arrest",
    "icu_24h": "ICU admission within 24 h", "icu_stay": "ICU admission during the stay",
    "mortality_1d": "death within 1 day", "mortality_7d": "death within 7 days",
    "mortality_28d": "death within 28 days",
    "mortality_90d": "death within 90 days", "mortality_180d": "death within 180 days",
    "mortality_365d": "death within 365 days", "mortality_stay": "death during the stay"}
CONDITION_LABELS = {"hypertension": "hypertension", "af": "atrial fibrillation", "heart_failure": "heart failure",
                    "pneumonia": "pneumonia", "sepsis": "sepsis", "acs": "acute coronary syndrome",
                    "aki": "acute kidney injury", "copd": "COPD"}


def target_label(target: str) -> str:
    """The words the book uses for a target column: ``admitted`` -> ``hospital admission``,
    ``deterioration_icu_24h`` -> ``ICU admission within 24 h``, ``cxr_edema`` -> ``edema on the X-ray``,
    ``diagnoses_i50`` -> ``heart failure (ICD-10 I50)``; a column it does not know is returned as it is. Used by the
    tables and figures of chapters 01-03 and 06."""
    if target == "admitted":
        return "hospital admission"
    if target.startswith("deterioration_") and target[len("deterioration_"):] in DETERIORATION_LABELS:
        return DETERIORATION_LABELS[target[len("deterioration_"):]]
    if target.startswith("cxr_") and target in CXR_TARGETS.values():
        return f"{target[4:].replace('_', ' ')} on the X-ray"
    if target.startswith("diagnoses_"):
        code = target[len("diagnoses_"):]
        name = CONDITION_LABELS.get(DIAGNOSES.get(code, ""), "diagnosis")
        return f"{name} (ICD-10 {code.upper()})"
    return target


#: The release's 1,428 diagnosis columns (``diagnoses_{code}``: ICD-10 prefixes of 3-5 characters with at
#: least 230 stays, lower case, most frequent first), in its column order (MDS-ED ``multimodal.py``).
MDS_ED_DIAGNOSES = tuple("""
i10 e78 z79 e785 e11 i25 r07 i251 z87 i2510 i50 z878 i48 z8789 k21 k219 e87 n18 e119 z790 n17 i489 i4891 n179
y92 f32 f329 r079 z86 i12 z7901 z95 z867 f41 z85 z794 f419 e03 i509 e039 j44 g47 r00 d64 i503 i129 d649 f172
f17 z66 n39 e780 n390 r078 z798 e66 z68 j45 r0789 j459 r10 e86 j449 i95 g473 i252 r55 i502 n189 z7982 f10
g4733 j96 z98 z91 m54 r06 z8671 g89 e871 e872 j18 n40 e669 j189 z8673 z951 d69 i21 f1720 a41 k59 r42 k590 r11
g892 g8929 e112 e860 j4590 d63 z7902 m10 z99 n400 e875 y920 d72 i27 m109 n183 z986 z9861 r001 b96 m79 k5900
d62 m81 d728 r060 m810 i5032 y929 n186 i5033 e116 g93 r09 d50 y83 r19 f101 d696 r53 g40 i13 r090 r0902 e83 f03
f039 a419 d7282 r65 m19 r51 i214 f0390 i959 z90 r652 f1721 m199 e1122 m1990 e876 z858 r197 z911 z96 e114 r101
z955 y922 y84 k76 i11 i73 f102 i120 y9223 i42 f1010 z854 r002 g470 g4700 z992 i5023 i110 d509 g92 i47 z683 w18
j4599 j960 z23 z966 i5022 e88 m25 i739 z918 h40 z9181 r33 i130 j441 z950 d631 i480 j969 d68 r41 r79 i69 m255
r112 e1165 e861 g409 e7800 g4090 r000 z8582 k92 i34 h409 r74 e1140 r13 k31 r131 i44 i35 e870 m549 r6521 j98
z684 j9601 r538 i278 g934 c78 r109 z82 i951 z8546 r791 c79 z9665 r50 r0602 r1013 z78 z781 e10 r05 j9690 i272
y9200 z824 r6520 e113 r5383 r29 z92 k74 r47 j69 k318 j690 k57 g43 i2789 b962 z8249 r91 i63 f31 b19 b95 z850
r339 e660 m796 m545 e6601 k746 e888 y921 y9209 e13 r103 z682 w183 i4892 k70 k22 r0600 r740 r1310 i82 j91 e1131
r068 z988 v43 y848 r57 t82 z9119 m48 b192 k29 f319 r20 r298 g439 g4390 r418 b1920 r110 e8889 e134 e1342 i26
v17 r509 z51 c34 n170 i269 r0689 s06 l03 r4182 k573 f11 f43 f05 z958 f028 f02 m480 z515 k703 z922 y9219 i472
r18 z9221 v10 i428 d638 e55 e559 e833 e8339 l89 m7960 i87 r45 i2699 v103 n184 i45 z795 r63 r26 z7952 k7469
r531 w1830 m06 v173 t45 d61 z9581 f0280 v46 g25 i699 i348 e46 d618 i71 d6181 r94 k766 i471 i67 k80 a04 b37 i08
e835 r188 z855 x58 i20 b18 j981 r31 m069 a047 i24 y838 i2511 e43 s22 s01 v15 z874 r56 z8744 z998 z9981 m2551
r569 r60 l97 k56 d6959 d695 j918 g9340 j06 j069 n401 m797 f431 j15 v153 i248 i359 r40 f1020 f14 i958 r911 i70
i85 c795 k52 l031 i49 z853 g20 k86 z94 h54 g30 k72 f1023 g81 h53 m47 e877 m62 l891 k7030 r73 c787 z89 i693 m94
e834 l8915 g309 k44 m628 v462 i31 z8503 e1129 g62 k921 w19 b182 k449 z7989 r62 r634 r2981 i504 k5730 k64 r32
g819 z21 r458 z6841 b968 i65 z904 r1030 r4585 b9629 i851 z860 g936 v42 k922 r627 m542 r943 c780 r209 i872 d47
a415 i447 z8601 k3184 z9114 j90 b9620 v66 i51 v667 i824 z861 j84 j81 c77 k83 r470 i340 z9049 e04 v436 t50 s09
i258 r4701 h91 n13 z851 e873 t86 k85 z8511 z9884 t40 i652 i61 r04 z80 i482 d689 i8510 r471 z93 i6999 i350 e106
r570 i07 m798 g9341 r78 h919 t81 g629 r9431 f141 m35 e1169 e53 v4364 z72 t828 i255 h81 f12 z9889 m478 e538
i634 g31 r730 m949 w184 w1849 g258 j95 d53 k75 d500 r918 g60 k63 b9689 h35 y832 i46 e27 j962 r609 r82 y928
r269 j43 f112 d539 b20 g2581 z871 i132 i259 f1410 t38 k62 z952 v44 z00 z9664 z006 k729 c349 r338 k529 z681
c793 t42 h9190 i2720 z45 e22 e115 f20 m4800 c7931 r788 s224 m17 j439 d684 r1011 n28 r7881 s72 i702 b952 k227
k58 k2270 z450 k768 c7800 e222 g609 z907 i5021 y9289 i200 r2989 f19 a08 n08 k859 k3189 i6935 z720 f1021 i714
s099 c3490 s065 i9581 e89 e1151 k20 t451 h353 j9819 b961 z8551 i080 r64 l40 i451 v433 i4510 s0990 m4781 v16
m7989 g318 k7689 j958 f4310 e05 e1139 t861 e880 k55 i469 e8342 r319 y830 g893 i5043 v85 z8711 f111 e21 r401
b956 l0312 k589 e1121 d70 r111 r748 e890 j159 k25 h3530 i078 k50 i5031 e1065 e104 j9811 c61 r25 t46 k5909
e1164 i16 z8552 i5030 e8809 d648 k648 i97 s02 e8351 f1120 c7951 f1110 e8779 m353 y831 c25 i442 e8352 v70 v707
k299 i429 m2556 z894 t455 i77 j11 z6842 t83 z923 r21 e109 n99 i6529 e874 i319 j811 i635 g4730 t380 c7952 t43
a4151 f1012 r0781 k65 f01 f015 i21a i21a1 c90 r68 m2555 c900 s066 h26 z7984 m32 e1142 f1022 e041 b378 f90 e274
n31 f4312 z8674 b97 k861 z905 z9071 m6282 k566 k2990 e102 i678 j910 h269 f209 d630 n25 k91 n998 f909 k567
i6340 l0311 j111 t4551 j9691 m85 m858 s00 k625 k830 s42 c22 y846 e8770 t8612 l975 q21 v60 m4806 v45 d7281 z857
k7290 z901 r508 k297 r59 n182 d86 r7309 z940 b9789 b978 m8580 w01 e103 i6350 i672 d472 s32 r798 h548 k26 f0150
n20 n133 i2582 j9600 n258 r829 i9589 k802 k509 i619 q211 i458 r072 r200 m12 c9000 r451 s010 j30 r410 r7989
k8020 r8299 s10 z59 m541 k5090 z6843 g35 n319 r03 s109 c91 k920 c50 e16 j9621 f25 t80 z908 i209 f410 j848
n1330 e213 k7460 z993 e2740 n9982 t36 m129 n185 i211 m179 z8619 k209 j8489 c786 m86 z590 d473 t835 j980 e1040
k7031 i4581 t814 k2970 z16 v600 m84 t8351 f129 v422 r578 d46 i978 s018 h538 n2581 k701 e44 i5020 z8585 g935
i441 r27 k831 c798 i6939 t829 z8782 e85 r040 j47 c341 r600 j9585 m51 k635 f199 i2581 r402 f259 c85 k758 z948
e8349 z4501 r1032 r310 d469 k51 g3184 r268 z8942 t85 r195 e869 d721 f39 z76 i6995 r478 h811 z870 j440 w1839
f1290 j9602 n289 t424 k7581 y924 f60 j984 f18 f181 f1810 c509 j810 e162 d869 l27 c911 n32 i160 l98 z8701 b9561
r030 k918 v420 i210 c5091 d686 z895 r630 g8194 z7682 z768 d709 j94 n30 k3181 v160 z8951 b965 r35 t39 y9201 v49
c7989 f121 g91 f50 s2249 f29 i313 j9809 b02 s82 i878 c771 r5081 e440 k760 k5660 j20 n200 i518 i826 z9010 r1312
m321 i2109 c9110 t44 i81 r1031 f33 t17 e662 i081 b34 f1210 r688 i952 i2119 t402 m543 s12 d57 i74 t78 g408 i62
g90 i440 d6481 v454 z9089 l29 j02 g82 i7020 z8542 k720 b349 k7010 r579 w10 v851 w06 c83 r22 v463 j948 z6832
c92 j32 i6992 g938 j309 w010 o99 r1012 k7200 y9212 a418 b964 a088 c858 z8781 v850 j841 e059 a084 k762 i710
k519 i9789 e0590 j479 k7291 k259 z953 z8614 z4502 y93 g8191 a410 k5190 b370 i60 k868 a40 f432 j029 r30 l974
m5430 k90 h544 b181 y9241 i490 s20 k27 t802 k298 n394 r1112 k579 i4901 d51 b3783 y842 j209 z6831 s1093 m31
s721 r76 z6839 i5042 n12 g931 m3210 z6836 z6837 t8021 b00 r34 r599 k43 z931 i30 m4802 r042 n328 i420 r739 k222
y840 i620 k279 z6833 s27 g894 v18 z83 v14 n52 k66 r827 e1022 n529 r2681 l299 t8286 s202 g45 v441 r93 t8289
h534 k224 r350 e050 a4159 k2980 m16 s220 z6830 r259 d75 r7303 r413 l9750 s52 j329 z6835 r61 e0500 s320 i89 j40
b191 s720 z6834 z791 z6838 r4789 d6489 t8285 e042 l408 j93 b9562 l25 r8271 z162 r297 g3183 g9389 g58 j9620
j152 d683 k254 b1910 i071 s7214 j38 k5731 r414 s2021 m21 z944 s223 z9079 k5732 o992 s80 k81 z804 m6281 i495
j961 i824y i5181 c8589 v180 h532 d89 m940 d56 i72 c772 d80 g589 i213 v498 k900 j1521 i712 j39 i80 i7300 i730
i639 h813 e8881 c259 k761 r279 e1031 t426 z981 e118 e1162 r1110 i6784 i8241 r15 g4080 d6832 o9928 i6932 v4988
a4189 i422 q61 l033 i33 i824z z902 i481 t501 f34 g8190 m41 r159 i517 l259 z8505 f500 g403 k649 z8504 r312 z53
s0180 g51 f13 k644 i890 m1a h57 g44 h8139 b35 s0100 s0101 c80 c64 z3a i609 k521 i330 f341 f603 r761 g822 e878
i519 r108 k264 r7611 c18 m1a9 i161 c343 e80 k208 t432 s008 z6829 h90 e1143 g57 s063 k9189 s70 t508 z800 z22
s30 l271 l978 l893 g8220 t88 m100 b9681 c67 n05 f339 g4030 d6862 l896 z88 m6283 f411 g252 g510 z9112 b954 l409
z74 t447 k838 t509 c801 s022 c228 e1069 s098 g891 k317 r180 a0472 e781 y836 g70 r39 m8468 m846 z77 d59 r52
v163 c71 h401 g56 r4023 z964 z9641 c797 m7966 c16 z803 k5790 k800
""".split())

#: The first columns of ``mds_ed.csv`` in the release's order (``full_preprocessing.py``: the pandas index
#: ``Unnamed: 0``, then the ECG record's and stay's general columns with demographics_gender/_age where
#: the record table had them, then the one-hot race groups and biometrics). The full layout is
#: :data:`MDS_ED_COLUMNS`.
MDS_ED_HEAD = ("Unnamed: 0", "general_data", "general_file_name", "general_study_id", "general_subject_id",
               "general_ecg_time", "general_ed_stay_id", "general_ed_hadm_id", "general_ed_diag_ed",
               "general_ed_diag_hosp", "demographics_gender", "demographics_age", "general_anchor_year",
               "general_anchor_age", "general_dod", "general_ecg_no_within_stay", "general_strat_fold",
               "general_intime", "general_outtime", "general_race", "general_90min", "general_mortality_hours",
               "general_mortality_days", "general_hosp_dischtime", "general_icu_time_hours",
               "demographics_ethnicity_asian", "demographics_ethnicity_black/african",
               "demographics_ethnicity_hispanic/latino", "demographics_ethnicity_other",
               "demographics_ethnicity_white", "biometrics_bmi", "biometrics_weight", "biometrics_height")

#: All 1,936 columns of the release's ``mds_ed.csv``, in order.
MDS_ED_COLUMNS = (MDS_ED_HEAD
                  + tuple(f"vitals_{v}_{s}" for v in ("temperature", "heartrate", "resprate", "o2sat", "sbp", "dbp")
                          for s in STATS) + ("vitals_acuity",)
                  + tuple(f"labvalues_{lab}_{s}" for lab in LABS for s in STATS)
                  + tuple(f"diagnoses_{c}" for c in MDS_ED_DIAGNOSES)
                  + tuple(f"deterioration_{d}" for d in DETERIORATION))

#: How MDS-ED's training loader (``multimodal.py``) types the columns: the 5 general integers, gender,
#: the one-hot race groups and every ``diagnoses_*`` column int32; these strings str (times parsed with
#: ``pd.to_datetime``; the two diagnosis lists are Python list literals); all other columns float32.
MDS_ED_INT_COLUMNS = ("Unnamed: 0", "general_study_id", "general_subject_id", "demographics_gender",
                      "general_ecg_no_within_stay", "general_strat_fold", "demographics_ethnicity_asian",
                      "demographics_ethnicity_black/african", "demographics_ethnicity_hispanic/latino",
                      "demographics_ethnicity_other", "demographics_ethnicity_white", "general_data")
MDS_ED_STR_COLUMNS = ("general_file_name", "general_ecg_time", "general_ed_diag_ed", "general_ed_diag_hosp",
                      "general_dod", "general_intime", "general_outtime", "general_race", "general_90min",
                      "general_hosp_dischtime")

#: MDS-ED's number of strat folds (``general_strat_fold`` 0-19, 5 % each); the release trains on 0-17,
#: validates on 18 and tests on 19, i.e. split fractions (0.9, 0.05, 0.05).
MDS_ED_FOLDS = 20

# ----------------------------------------------------------------------------------------------- ECGs
#: Lead order of a (time, 12) ECG record (PTB-XL / MIMIC-IV-ECG / MDS-ED memmap columns).
LEADS = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")

#: Sampling rate of MDS-ED's ECG waveforms in Hz (10 s records of 1000 samples).
FS = 100

#: Column of each lead in MDS-ED's ``memmap.npy`` (ECG-MIMIC ``channel_stoi_default``: I, II, V1-V6, III, aVR,
#: aVL, aVF). The one map between the release's order and :data:`LEADS`: the twin writes through it and the
#: loader reads through it, returning records in :data:`LEADS` order.
MDS_ED_LEAD_COLUMNS = {"I": 0, "II": 1, "V1": 2, "V2": 3, "V3": 4, "V4": 5, "V5": 6, "V6": 7, "III": 8, "aVR": 9,
                       "aVL": 10, "aVF": 11}

#: MDS-ED's ECG amplitudes are clipped to +-3 mV (ECG-MIMIC ``prepare_mimicecg(clip_amp=3)``).
ECG_CLIP_MV = 3.0

# ------------------------------------------------------------------------------------- MIMIC-Eye release
# Facts of MIMIC-Eye 1.0.0 as its own importer writes it (GitHub ChihchengHsieh/MIMIC-Eye: utils/importer.py,
# data_path.py, "[Patient-Level] (1) Clinical_data_import_mini copy.ipynb", "(4) Import _CXR_images copy.ipynb").
# Used by the twin (mmlib.data.synth_mimic_eye) and the loader (mmlib.data.mimic_eye).

#: One folder per patient (every subject with an eye-tracked chest X-ray), and the whole-table folder.
MIMIC_EYE_PATIENT_DIR = "patient_{subject_id}"
MIMIC_EYE_SPREADSHEETS = "spreadsheets"

#: Where the importer puts MIMIC-IV hosp ``patients`` (only there: not in the patient folders).
MIMIC_EYE_PATIENTS_CSV = "spreadsheets/Hosp/patients.csv"

#: The per-patient files the loader reads -> (columns it needs, who writes the file). The importer writes a
#: per-patient ED/Hosp table only when the patient has rows in it (``import_to_patient_sub_folder``), and the
#: CXR-JPG tables for every patient (header only when empty). Every CSV carries the pandas index of the
#: source table as a leading unnamed column.
MIMIC_EYE_FILES = {
    "ED/edstays.csv": ("subject_id", "hadm_id", "stay_id", "intime", "outtime", "gender", "arrival_transport",
                       "disposition"),  # plus 'race' (ED 2.x) or 'ethnicity' (ED 1.x)
    "ED/triage.csv": ("subject_id", "stay_id", *VITALS, "pain", "acuity", "chiefcomplaint"),
    "ED/vitalsign.csv": ("subject_id", "stay_id", "charttime", *VITALS),
    "Hosp/admissions.csv": ("subject_id", "hadm_id", "admittime"),
    "Hosp/diagnoses_icd.csv": ("subject_id", "hadm_id", "seq_num", "icd_code", "icd_version"),
    "CXR-JPG/cxr_meta.csv": ("dicom_id", "subject_id", "study_id", "ViewPosition", "StudyDate", "StudyTime"),
    "CXR-JPG/cxr_chexpert.csv": ("subject_id", "study_id", *CHEXPERT),
}
#: The race column of ``edstays`` in MIMIC-IV-ED 2.x, and its name in the older 1.x release.
RACE_COLUMNS = ("race", "ethnicity")

#: The 12 columns of MIMIC-CXR-JPG's ``mimic-cxr-2.0.0-metadata.csv`` in order, and the 4 the importer appends
#: in ``cxr_meta.csv`` (``StudyDateTime`` = float(str(StudyDate) + str(StudyTime)); ``stay_id``: the one ED stay
#: whose intime < StudyDateTime < outtime compared as digit strings, blank otherwise -- blank for every study
#: taken before 10:00 because str(StudyTime) drops the leading zero, so the loader re-links by time itself).
CXR_META_COLUMNS = ("dicom_id", "subject_id", "study_id", "PerformedProcedureStepDescription", "ViewPosition",
                    "Rows", "Columns", "StudyDate", "StudyTime", "ProcedureCodeSequence_CodeMeaning",
                    "ViewCodeSequence_CodeMeaning", "PatientOrientationCodeSequence_CodeMeaning")
CXR_META_EXTRA_COLUMNS = ("in_eye_gaze", "in_reflacx", "StudyDateTime", "stay_id")
#: ``cxr_meta.csv`` lists only the eye-tracked (EyeGaze / REFLACX) images, which are frontal; the study folder
#: ``s{study_id}/`` holds every image of the study (the importer copies the whole folder), laterals included.
FRONTAL_VIEWS = ("PA", "AP")
LATERAL_VIEWS = ("LATERAL", "LL")

#: CheXpert coding of ``cxr_chexpert.csv`` and how the loader maps it to a 0/1 target: positive 1.0 -> 1,
#: negative 0.0 -> 0, blank (not mentioned in the report) -> 0, uncertain -1.0 -> NaN (excluded from that
#: target, "U-ignore"); a study without a CheXpert row -> NaN for every target. Each kind is counted.
CHEXPERT_POSITIVE, CHEXPERT_NEGATIVE, CHEXPERT_UNCERTAIN = 1.0, 0.0, -1.0
CHEXPERT_TARGET_OF = {CHEXPERT_POSITIVE: 1.0, CHEXPERT_NEGATIVE: 0.0, CHEXPERT_UNCERTAIN: float("nan")}
CHEXPERT_NOT_MENTIONED_AS = 0.0

#: MIMIC-IV times in the release: whole minutes, written with zero seconds.
MIMIC_TIME_FORMAT = "%Y-%m-%d %H:%M:00"

#: MIMIC-IV gender codes; the loader also accepts the spelled-out words (any case) and rejects anything else.
GENDER_CODES = {"M": "M", "F": "F", "MALE": "M", "FEMALE": "F"}

#: Physiologically possible ranges (inclusive) of the MIMIC-IV-ED vital signs (temperature in degrees
#: Fahrenheit, SpO2 in %, rates per minute, pressures in mmHg) and the ESI acuity. A value outside its range
#: in the release (typing errors such as a Celsius temperature or SBP 1200) becomes NaN and is counted.
VITAL_RANGES = {"temperature": (86.0, 113.0), "heartrate": (20.0, 300.0), "resprate": (2.0, 80.0),
                "o2sat": (50.0, 100.0), "sbp": (40.0, 300.0), "dbp": (10.0, 200.0), "acuity": (1.0, 5.0)}

#: Possible ages in years (anchor_age + year of the ED visit - anchor_year); outside is an error.
AGE_RANGE = (0, 120)

# ---------------------------------------------------------------------------------- synthetic truth
#: For a synthetic cohort, the latent truth behind a target (columns of ``synthetic_truth.parquet``): the
#: label the stay would have had without label bias, and the true need (log-odds) that label was drawn from.
#: Chapter 04 measures every model against both the recorded label and this truth.
TRUTH_OF_TARGET = {"admitted": ("admitted_unbiased", "admission_need"),
                   "deterioration_icu_24h": ("icu_24h_unbiased", "icu_24h_need")}
